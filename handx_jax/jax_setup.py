"""Process-level JAX set-up for entry points: host-memory tuning, compile cache, absl flags for grain."""

import os


def setup(cache_dir: str | None = None) -> None:
    """Tune glibc's malloc for XLA's CPU buffers (`host_memory`; before the first computation),
    enable the persistent compile cache and mark absl flags parsed (grain workers read them)."""
    from absl import flags
    import jax

    from handx_jax import host_memory

    host_memory.tune_malloc()

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    cache_dir = cache_dir or os.environ.get(
        "HANDX_COMPILE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "handx_jax", "xla")
    )
    try:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    except Exception:  # a read-only home must not stop a run
        pass
