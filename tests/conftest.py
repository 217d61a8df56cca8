"""Test setup: 8 fake CPU devices before JAX is imported, so sharding is exercised."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from handx_jax import host_memory  # noqa: E402

host_memory.tune_malloc()  # as the `handx` entry point does

from absl import flags  # noqa: E402

# grain worker processes read absl flags; tests are not absl apps.
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
