"""The flattened 2-D matmul with its hand-written backward equals autodiff of an einsum."""

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.models.transformer import dense_nd, matmul_2d


def _inputs(shape_x, shape_w, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal(shape_x), jnp.float32),
            jnp.asarray(rng.standard_normal(shape_w), jnp.float32))


def test_matmul_2d_value_and_gradients_match_autodiff():
    x, w = _inputs((12, 5), (5, 7))
    dy = jnp.asarray(np.random.default_rng(1).standard_normal((12, 7)), jnp.float32)
    y, vjp = jax.vjp(matmul_2d, x, w)
    y_ref, vjp_ref = jax.vjp(lambda a, b: jnp.einsum("nd,df->nf", a, b), x, w)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(dy), vjp_ref(dy)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_nd_contracts_two_axes_like_the_attention_output_einsum():
    x, w = _inputs((2, 3, 4, 5), (4, 5, 6))
    loss = lambda f: (lambda a, b: jnp.sum(jnp.sin(f(a, b))))
    got = jax.grad(loss(lambda a, b: dense_nd(a, b, in_dims=2)), argnums=(0, 1))(x, w)
    want = jax.grad(loss(lambda a, b: jnp.einsum("bthk,hkd->btd", a, b)), argnums=(0, 1))(x, w)
    assert dense_nd(x, w, in_dims=2).shape == (2, 3, 6)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_dense_nd_keeps_output_axes_of_the_fused_qkv_kernel():
    x, w = _inputs((2, 3, 4), (4, 3, 2, 5))
    got = dense_nd(x, w)
    np.testing.assert_allclose(got, jnp.einsum("btd,dnhk->btnhk", x, w), rtol=1e-5, atol=1e-5)


def test_dense_nd_names_mismatched_dims():
    x, w = _inputs((2, 4), (3, 5))
    try:
        dense_nd(x, w)
    except ValueError as e:
        assert "(4,)" in str(e) and "(3,)" in str(e)
    else:
        raise AssertionError("mismatched dims were accepted")
