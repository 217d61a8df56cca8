"""Process-level JAX set-up for entry points (host-memory tuning, compile cache, absl flags for
grain) and the CPU compile options of inference jits."""

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


# XLA's CPU backend by default hands YNNPACK fused graphs that pull layer norms, GELU chains
# and reductions in with the dots around them; in the sampler's reverse process (forward
# passes only) one such graph per step took about 1.4x as long as the same ops split up.
# Letting YNNPACK take each dot on its own makes XS DDIM sampling about 1.13x faster (S 1.06x;
# docs/plan.md); training steps are faster with the default, so only inference jits ask for it.
CPU_INFERENCE_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def inference_compiler_options() -> dict | None:
    """`jax.jit(..., compiler_options=...)` for inference-only functions (samplers): the CPU
    options above when XLA computes on the CPU, else None. `HANDX_XLA_INFERENCE_OPTIONS=0`
    turns them off."""
    import jax

    if os.environ.get("HANDX_XLA_INFERENCE_OPTIONS", "1") == "0" or jax.default_backend() != "cpu":
        return None
    return dict(CPU_INFERENCE_OPTIONS)
