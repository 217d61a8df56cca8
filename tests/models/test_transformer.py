"""Shared transformer blocks: masking semantics and logical axis names on every parameter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.models import transformer

ALLOWED = {"batch", "embed", "mlp", "heads", "kv", "vocab", "length", "feature", "joints", None}


def _encoder(causal=False):
    return transformer.Encoder(num_layers=2, num_heads=2, mlp_dim=32, causal=causal)


def test_key_padding_mask_hides_padded_tokens():
    enc = _encoder()
    x = jax.random.normal(jax.random.key(0), (2, 7, 16))
    mask = jnp.array([[1] * 5 + [0] * 2, [1] * 7], jnp.float32)
    params = jax.jit(enc.init)(jax.random.key(1), x, mask)
    apply = jax.jit(enc.apply)
    y1 = apply(params, x, mask)
    x2 = x.at[0, 5:].set(100.0)  # change only padded tokens of example 0
    y2 = apply(params, x2, mask)
    np.testing.assert_allclose(y1[0, :5], y2[0, :5], atol=1e-5)
    np.testing.assert_allclose(y1[1], y2[1], atol=1e-5)
    # Without the mask the same change leaks into the real tokens.
    y3 = apply(params, x2, None)
    assert np.abs(np.asarray(y3[0, :5] - y1[0, :5])).max() > 1e-3


def test_causal_layers_do_not_look_ahead():
    enc = _encoder(causal=True)
    x = jax.random.normal(jax.random.key(0), (1, 6, 16))
    params = jax.jit(enc.init)(jax.random.key(1), x)
    apply = jax.jit(enc.apply)
    y1 = apply(params, x)
    y2 = apply(params, x.at[0, 4:].add(jax.random.normal(jax.random.key(5), (2, 16))))
    np.testing.assert_allclose(y1[0, :4], y2[0, :4], atol=1e-5)
    assert np.abs(np.asarray(y1[0, 4:] - y2[0, 4:])).max() > 1e-3


def test_every_parameter_has_allowed_logical_names():
    enc = _encoder()
    x = jnp.zeros((1, 4, 16))
    params = enc.init(jax.random.key(0), x)["params"]
    leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda v: isinstance(v, nn.Partitioned))
    assert leaves
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned), type(leaf)
        assert len(leaf.names) == leaf.value.ndim
        assert set(leaf.names) <= ALLOWED, leaf.names
    # fused qkv: one kernel (embed, 3, heads, kv)
    qkv = params["layer_0"]["attention"]["qkv_kernel"]
    assert qkv.value.shape == (16, 3, 2, 8) and qkv.names == ("embed", None, "heads", "kv")


def test_attention_matches_reference_softmax():
    attn = transformer.MultiHeadAttention(num_heads=2)
    x = jax.random.normal(jax.random.key(2), (1, 5, 8))
    variables = attn.init(jax.random.key(3), x)
    p = nn.meta.unbox(variables)["params"]
    y = attn.apply(variables, x)
    qkv = np.einsum("btd,dnhk->nbthk", x, p["qkv_kernel"]) + np.asarray(p["qkv_bias"])[:, None, None]
    q, k, v = qkv
    logits = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(4)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    ref = np.einsum("bthk,hkd->btd", np.einsum("bhts,bshk->bthk", w, v), p["out_kernel"]) + p["out_bias"]
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_sinusoidal_embedding_shape_and_distinct_rows():
    table = np.asarray(transformer.sinusoidal_table(10, 7))
    assert table.shape == (10, 7)
    assert np.abs(table[1] - table[2]).max() > 1e-2
