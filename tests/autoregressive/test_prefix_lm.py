"""The prefix-LM: mask semantics, shapes, null prefix, parameter and FLOP formulas."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax.models import prefix_lm
from handx_jax.models.transformer import count_params

CODEBOOK, E, D, HEADS, LAYERS = 11, 12, 32, 4, 2
apply = jax.jit(lambda model, *a: model.apply(*a), static_argnums=0)


def _model(**kw):
    args = dict(codebook_size=CODEBOOK, num_layers=LAYERS, num_heads=HEADS, d_model=D,
                mlp_dim=prefix_lm.swiglu_hidden(D, 32), text_embed_dim=E, max_len=16)
    args.update(kw)
    return prefix_lm.PrefixLM(**args)


def _inputs(b=3, length=8, seed=0):
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((b, 3, E)).astype(np.float32)
    tokens = rng.integers(0, CODEBOOK, (b, length)).astype(np.int32)
    return jnp.asarray(text), jnp.asarray(tokens)


@pytest.fixture(scope="module")
def model_and_params():
    model = _model()
    text, tokens = _inputs()
    params = jax.jit(model.init)(jax.random.key(0), text, tokens)["params"]
    return model, params


def test_swiglu_hidden_rounds_up():
    assert prefix_lm.swiglu_hidden(512) == 1536      # 1365.3 -> 1536
    assert prefix_lm.swiglu_hidden(768) == 2048      # exactly 2048
    assert prefix_lm.swiglu_hidden(1024) == 2816     # 2730.7 -> 2816
    assert prefix_lm.swiglu_hidden(64, 32) == 192


def test_logits_shape_and_every_parameter_has_logical_names(model_and_params):
    model, params = model_and_params
    text, tokens = _inputs()
    logits = apply(model, {"params": params}, text, tokens)
    assert logits.shape == (3, 9, CODEBOOK + 2)
    leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
    flat = jax.tree_util.tree_leaves_with_path(nn.unbox(params))
    assert not any("bias" in jax.tree_util.keystr(p) for p, _ in flat)  # no biases


def test_motion_is_causal_and_prefix_is_bidirectional(model_and_params):
    model, params = model_and_params
    text, tokens = _inputs()
    base = apply(model, {"params": params}, text, tokens)
    # changing motion token 5 leaves predictions 0..5 alone and changes 6..
    changed = tokens.at[:, 5].set((tokens[:, 5] + 1) % CODEBOOK)
    out = apply(model, {"params": params}, text, changed)
    np.testing.assert_allclose(out[:, :6], base[:, :6], atol=1e-6)
    assert np.abs(np.asarray(out[:, 6:] - base[:, 6:])).max() > 1e-4
    # the relation caption (last prefix slot) reaches the first prediction through the
    # bidirectional prefix, and so does the left caption
    for role in (0, 2):
        other = text.at[:, role].add(1.0)
        out = apply(model, {"params": params}, other, tokens)
        assert np.abs(np.asarray(out[:, 0] - base[:, 0])).max() > 1e-4


def test_prefix_lm_bias_against_a_loop():
    pos = jnp.arange(7)
    bias = np.asarray(prefix_lm.prefix_lm_bias(pos, pos, 3))
    for q in range(7):
        for k in range(7):
            assert (bias[q, k] == 0) == (k < 3 or k <= q)


def test_dropped_rows_use_the_null_prefix(model_and_params):
    model, params = model_and_params
    text, tokens = _inputs()
    drop = jnp.array([True, False, True])
    out = apply(model, {"params": params}, text, tokens, drop)
    other = apply(model, {"params": params}, text * 5.0, tokens, drop)
    np.testing.assert_allclose(out[0], other[0], atol=1e-6)   # text ignored when dropped
    assert np.abs(np.asarray(out[1] - other[1])).max() > 1e-4


def test_rotary_is_a_relative_position_encoding():
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.standard_normal((1, 1, 2, 8)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((1, 1, 2, 8)), jnp.float32)
    dot = lambda a, b: float(jnp.sum(prefix_lm.rotary(q, jnp.array([a])) * prefix_lm.rotary(k, jnp.array([b]))))
    assert dot(5, 2) == pytest.approx(dot(13, 10), abs=1e-4)
    assert abs(dot(5, 2) - dot(5, 4)) > 1e-3


@pytest.mark.parametrize("codebook,layers,d,heads,mlp,e", [(11, 2, 32, 4, 192, 12), (512, 1, 64, 2, 256, 48)])
def test_analytic_parameter_count_equals_the_real_one(codebook, layers, d, heads, mlp, e):
    model = prefix_lm.PrefixLM(codebook_size=codebook, num_layers=layers, num_heads=heads, d_model=d, mlp_dim=mlp,
                               text_embed_dim=e, max_len=12)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 3, e)), jnp.zeros((1, 4), jnp.int32)))
    counts = prefix_lm.parameter_counts(codebook_size=codebook, num_layers=layers, d_model=d, mlp_dim=mlp,
                                        text_embed_dim=e)
    assert counts["total"] == count_params(shapes["params"])
    flat = {jax.tree_util.keystr(p): x.size for p, x in jax.tree_util.tree_leaves_with_path(nn.unbox(shapes["params"]))}
    assert counts["embedding"] == flat["['token_embedding']"] == (codebook + 2) * d
    assert counts["non_embedding"] == counts["total"] - 2 * (codebook + 2) * d


def test_forward_flops_formula_by_hand():
    f = prefix_lm.forward_flops(codebook_size=10, num_layers=1, d_model=4, mlp_dim=6, text_embed_dim=5, motion_inputs=2)
    s = 5
    layer = 2 * s * 4 * 12 + 4 * s * s * 4 + 2 * s * 4 * 4 + 6 * s * 4 * 6
    assert f == layer + 2 * 3 * 5 * 4 + 2 * 3 * 4 * 12
