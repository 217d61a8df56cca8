"""host_memory.tune_malloc: XLA's large CPU temporaries stop faulting in afresh on every call."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from handx_jax import host_memory

# A jitted function whose 64 MiB intermediate (16384 x 1024 float32) is an XLA temporary,
# above glibc's largest mmap threshold; minor page faults are counted over repeated calls.
PROBE = textwrap.dedent("""
    import json, resource, sys
    from handx_jax import host_memory
    applied = host_memory.tune_malloc()
    import jax, jax.numpy as jnp
    x = jnp.ones((16384, 64), jnp.float32)
    w1 = jnp.full((64, 1024), 0.01, jnp.float32)
    w2 = jnp.full((1024, 64), 0.01, jnp.float32)
    f = jax.jit(lambda x, w1, w2: (jnp.tanh(x @ w1) @ w2).sum())
    for _ in range(3):
        f(x, w1, w2).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    calls = 8
    for _ in range(calls):
        f(x, w1, w2).block_until_ready()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls
    print(json.dumps({"applied": applied, "faults_per_call": faults}))
""")
TEMP_PAGES = 16384 * 1024 * 4 // 4096


def _probe(setting: str) -> dict:
    env = {**os.environ, host_memory.ENV: setting, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory._glibc() is None, reason="mallopt tuning is glibc-only")
def test_tuned_heap_keeps_temporaries_mapped():
    plain, tuned = _probe("0"), _probe("1")
    assert plain["applied"] is False and tuned["applied"] is True
    # Without the tuning each call maps the 64 MiB temporary again and touches every page.
    assert plain["faults_per_call"] > 0.5 * TEMP_PAGES, plain
    # With it the pages are reused: at most a few percent of them fault.
    assert tuned["faults_per_call"] < 0.05 * TEMP_PAGES, tuned


def test_only_applies_where_xla_computes_on_the_host():
    assert host_memory.computes_on_cpu({"JAX_PLATFORMS": "cpu"})
    assert not host_memory.computes_on_cpu({"JAX_PLATFORMS": "cuda"})
    assert not host_memory.computes_on_cpu({"JAX_PLATFORMS": "tpu,cpu"})


def test_entry_points_tune_before_jax_computes():
    """jax_setup.setup(), which every command that runs JAX (and so every sweep subprocess)
    calls before its first computation, applies the tuning."""
    code = ("import jax; from handx_jax import host_memory, jax_setup; assert host_memory._applied is None; "
            "jax_setup.setup(); print(host_memory._applied)")
    env = {**os.environ, host_memory.ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = host_memory._glibc() is not None
    assert out.stdout.strip() == str(expected)
