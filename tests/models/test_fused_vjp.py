"""Layer norm and GELU with hand-written backward passes equal autodiff of the plain formulas."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax.models.transformer import gelu, layer_norm


def _reference_layer_norm(x, scale, bias, epsilon=1e-5):
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return (x32 - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias


def _random(shape, seed, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, jnp.float32)


def test_layer_norm_value_and_gradients_match_autodiff():
    x, scale, bias = _random((3, 5, 16), 0, 3.0) + 1.0, _random((16,), 1), _random((16,), 2)
    dy = _random((3, 5, 16), 3)
    y, vjp = jax.vjp(layer_norm, x, scale, bias)
    y_ref, vjp_ref = jax.vjp(_reference_layer_norm, x, scale, bias)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(dy), vjp_ref(dy)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_layer_norm_keeps_bfloat16_input_dtype_in_its_gradient():
    x = _random((4, 8), 0).astype(jnp.bfloat16)
    dx, dscale = jax.grad(lambda a, s: jnp.sum(layer_norm(a, s, jnp.zeros(8)) ** 2), argnums=(0, 1))(x, jnp.ones(8))
    assert dx.dtype == jnp.bfloat16 and dscale.dtype == jnp.float32


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
def test_gelu_matches_flax_gelu_and_its_gradient(dtype, tol):
    """The reference is float32 autodiff on the same (rounded) inputs; in bfloat16 the only
    error left is rounding the result to bfloat16 (relative 2^-9)."""
    x = (_random((7, 33), 0, 3.0)).astype(dtype)
    dy = _random((7, 33), 1).astype(dtype)
    y, vjp = jax.vjp(gelu, x)
    y_ref, vjp_ref = jax.vjp(nn.gelu, x.astype(jnp.float32))
    (dx,), (dx_ref,) = vjp(dy), vjp_ref(dy.astype(jnp.float32))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx_ref, rtol=tol, atol=tol)
