"""Trainer tests share a persistent XLA compile cache (also used by their subprocesses), so
the many small programs a run compiles are built once per machine, not once per test."""
import os
import tempfile

import jax

CACHE_DIR = os.path.join(tempfile.gettempdir(), f"handx_jax_test_xla_cache_{os.getuid()}")
os.environ["HANDX_TEST_XLA_CACHE"] = CACHE_DIR
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
