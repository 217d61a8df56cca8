"""jax_setup.inference_compiler_options: the CPU compile options inference jits use."""

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax import jax_setup
from handx_jax.models.transformer import Encoder


def test_cpu_options_unless_turned_off(monkeypatch):
    assert jax.default_backend() == "cpu"
    monkeypatch.delenv("HANDX_XLA_INFERENCE_OPTIONS", raising=False)
    assert jax_setup.inference_compiler_options() == jax_setup.CPU_INFERENCE_OPTIONS
    monkeypatch.setenv("HANDX_XLA_INFERENCE_OPTIONS", "0")
    assert jax_setup.inference_compiler_options() is None


def test_options_compile_and_keep_the_numbers():
    # A pre-norm encoder stack (layer norms, GELU, attention): the graph the options change.
    model = Encoder(num_layers=2, num_heads=2, mlp_dim=64)
    x = jax.random.normal(jax.random.key(0), (8, 12, 32), jnp.float32)
    params = model.init(jax.random.key(1), x)
    fn = lambda p, x: model.apply(p, x)
    default = np.asarray(jax.jit(fn)(params, x))
    tuned = jax.jit(fn, compiler_options=jax_setup.CPU_INFERENCE_OPTIONS)
    text = tuned.lower(params, x).compile().as_text()
    assert "__ynn_fusion" in text  # the dots still go to the library
    np.testing.assert_allclose(np.asarray(tuned(params, x)), default, rtol=1e-4, atol=1e-5)
