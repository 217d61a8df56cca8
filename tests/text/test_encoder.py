"""Treble text encoder: per-role CLS, shared weights, summed; padding ignored."""

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.text.encoder import PrecomputedTextProjection, TrebleTextEncoder


def _setup():
    enc = TrebleTextEncoder(vocab_size=40, max_len=8, num_layers=1, d_model=16, num_heads=2, mlp_dim=32)
    tokens = jnp.array(np.random.default_rng(0).integers(2, 40, size=(2, 3, 6)), jnp.int32)
    mask = jnp.ones((2, 3, 6), jnp.float32).at[:, :, 4:].set(0.0)
    tokens = tokens * mask.astype(jnp.int32)
    params = enc.init(jax.random.key(0), tokens, mask)
    return enc, params, tokens, mask


def test_shape_and_padding_ignored():
    enc, params, tokens, mask = _setup()
    out = enc.apply(params, tokens, mask)
    assert out.shape == (2, 16)
    out2 = enc.apply(params, tokens.at[:, :, 4:].set(7), mask)
    np.testing.assert_allclose(out, out2, atol=1e-5)


def test_roles_are_distinguished_and_summed():
    enc, params, tokens, mask = _setup()
    out = enc.apply(params, tokens, mask)
    swapped = enc.apply(params, tokens[:, [1, 0, 2]], mask[:, [1, 0, 2]])
    # Swapping left and right texts changes the condition (own CLS per role) ...
    assert np.abs(np.asarray(out - swapped)).max() > 1e-4
    # ... and it is a sum of independent per-role encodings through shared weights:
    # f(A, B, C) + f(A', B', C) == f(A, B', C) + f(A', B, C).
    other = tokens[::-1]
    mix = lambda left, right: enc.apply(params, jnp.stack([left[:, 0], right[:, 1], tokens[:, 2]], axis=1), mask)
    np.testing.assert_allclose(mix(tokens, tokens) + mix(other, other), mix(tokens, other) + mix(other, tokens), atol=1e-4)
    assert np.abs(np.asarray(mix(tokens, tokens) - mix(other, tokens))).max() > 1e-4
    assert "cls" in params["params"] and params["params"]["cls"].value.shape == (3, 16)


def test_precomputed_projection_is_per_role():
    proj = PrecomputedTextProjection(d_model=8)
    emb = jax.random.normal(jax.random.key(1), (2, 3, 5))
    params = proj.init(jax.random.key(0), emb)
    out = proj.apply(params, emb)
    assert out.shape == (2, 8)
    # It starts as the sum of the role embeddings (identity kernels, zero bias) ...
    np.testing.assert_allclose(np.asarray(out)[:, :5], np.asarray(emb.sum(axis=1)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(out)[:, 5:], 0.0, atol=1e-6)
    # ... and each role has its own kernel: once they differ, swapping roles changes the output.
    kernel = params["params"]["kernel"]
    kernel = jax.tree_util.tree_map(lambda k: k.at[0].multiply(2.0), kernel)
    params = {"params": {**params["params"], "kernel": kernel}}
    assert np.abs(np.asarray(proj.apply(params, emb) - proj.apply(params, emb[:, [1, 0, 2]]))).max() > 1e-4
