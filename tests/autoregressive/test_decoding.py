"""KV-cached decoding against full recomputation; sampling filters; guidance; continuation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax.autoregressive import decoding
from handx_jax.models import prefix_lm

CODEBOOK, E = 13, 10
END = prefix_lm.end_id(CODEBOOK)
apply = jax.jit(lambda model, *a, method=None: model.apply(*a, method=method), static_argnums=0, static_argnames="method")


@pytest.fixture(scope="module")
def lm():
    model = prefix_lm.PrefixLM(codebook_size=CODEBOOK, num_layers=2, num_heads=4, d_model=32, mlp_dim=64,
                               text_embed_dim=E, max_len=3 + 12)
    rng = np.random.default_rng(0)
    text = jnp.asarray(rng.standard_normal((4, 3, E)), jnp.float32)
    params = jax.jit(model.init)(jax.random.key(1), text, jnp.zeros((4, 5), jnp.int32))["params"]
    params = jax.tree_util.tree_map(lambda x: x * 3.0, params)  # sharper logits: distinct greedy choices
    return model, params, text


def test_cached_logits_equal_full_recompute_at_every_position(lm):
    model, params, text = lm
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, CODEBOOK, (4, 11)), jnp.int32)
    full = apply(model, {"params": params}, text, tokens)          # (4, 12, V)
    cache = prefix_lm.init_cache(model, 4)
    logits, cache = apply(model, {"params": params}, text, None, None, cache, method=prefix_lm.PrefixLM.prefill)
    stepped = [logits]
    for i in range(tokens.shape[1]):
        logits, cache = apply(model, {"params": params}, tokens[:, i], 3 + i, cache, method=prefix_lm.PrefixLM.step)
        stepped.append(logits)
    stepped = jnp.stack(stepped, axis=1)
    np.testing.assert_allclose(np.asarray(stepped), np.asarray(full), rtol=0, atol=1e-5)
    assert float(jnp.std(full)) > 0.1  # not trivially equal


def test_prefill_with_context_equals_stepping_the_context(lm):
    model, params, text = lm
    context = jnp.asarray(np.random.default_rng(3).integers(0, CODEBOOK, (4, 4)), jnp.int32)
    full = apply(model, {"params": params}, text, context)
    logits, _ = apply(model, {"params": params}, text, context, None, prefix_lm.init_cache(model, 4),
                            method=prefix_lm.PrefixLM.prefill)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(full[:, -1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("guidance", [None, 2.0])
def test_greedy_tokens_with_and_without_cache_agree(lm, guidance):
    model, params, text = lm
    kw = dict(max_tokens=8, guidance=guidance, min_tokens=8)  # no early END: compare all 8
    cached = decoding.decode(model, params, text, **kw)
    full = decoding.decode(model, params, text, use_cache=False, **kw)
    np.testing.assert_array_equal(cached.tokens, full.tokens)
    assert (cached.tokens >= 0).all() and (cached.tokens < CODEBOOK).all()
    assert len(np.unique(cached.tokens)) > 1


def test_greedy_tokens_follow_the_argmax_of_a_python_loop(lm):
    model, params, text = lm
    out = decoding.decode(model, params, text, max_tokens=8, min_tokens=8)
    seq = np.zeros((4, 0), np.int32)
    for _ in range(8):  # one fixed-shape forward per step (PAD beyond the sequence is never attended)
        padded = np.concatenate([seq, np.full((4, 8 - seq.shape[1]), CODEBOOK + 1, np.int32)], axis=1)
        logits = apply(model, {"params": params}, text, padded)[:, seq.shape[1]]
        logits = logits.at[:, prefix_lm.pad_id(CODEBOOK)].set(-jnp.inf).at[:, END].set(-jnp.inf)
        seq = np.concatenate([seq, np.asarray(jnp.argmax(logits, -1))[:, None].astype(np.int32)], axis=1)
    np.testing.assert_array_equal(out.tokens, seq)


def test_end_stops_rows_and_the_loop(lm):
    model, params, _ = lm
    # make END the favourite after the first token: the head column of END gets a big boost
    boosted = dict(params)
    head = params["head"]
    boosted["head"] = head.replace_boxed(head.unbox().at[:, END].add(50.0)) if hasattr(head, "replace_boxed") else head
    text = jnp.zeros((2, 3, E))
    out = decoding.decode(model, boosted, text, max_tokens=8, min_tokens=1)
    assert (out.lengths == 1).all()
    assert (out.tokens[:, 1:] == -1).all() and (out.tokens[:, 0] >= 0).all()


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    k2 = decoding.filter_logits(logits, 2, 1.0)
    assert np.isfinite(np.asarray(k2)).tolist() == [[True, True, False, False]]
    p = decoding.filter_logits(logits, 0, 0.75)      # 0.5 < 0.75 <= 0.8: two tokens
    assert np.isfinite(np.asarray(p)).tolist() == [[True, True, False, False]]
    p = decoding.filter_logits(logits, 0, 0.5)       # the first token alone reaches 0.5
    assert np.isfinite(np.asarray(p)).tolist() == [[True, False, False, False]]
    assert np.isfinite(np.asarray(decoding.filter_logits(logits, 0, 1.0))).all()


def test_sampling_respects_top_k_and_differs_by_seed(lm):
    model, params, text = lm
    a = decoding.decode(model, params, text, max_tokens=8, temperature=1.0, top_k=1, seed=0, min_tokens=8)
    greedy = decoding.decode(model, params, text, max_tokens=8, min_tokens=8)
    np.testing.assert_array_equal(a.tokens, greedy.tokens)   # top-1 sampling is greedy
    b = decoding.decode(model, params, text, max_tokens=8, temperature=5.0, seed=0, min_tokens=8)
    c = decoding.decode(model, params, text, max_tokens=8, temperature=5.0, seed=1, min_tokens=8)
    assert (b.tokens != c.tokens).any()
    assert (b.tokens < CODEBOOK).all()  # PAD and END never drawn before min_tokens


def test_guidance_changes_tokens_and_context_continues(lm):
    model, params, text = lm
    plain = decoding.decode(model, params, text, max_tokens=8, min_tokens=8)
    guided = decoding.decode(model, params, text, max_tokens=8, min_tokens=8, guidance=4.0)
    assert (plain.tokens != guided.tokens).any()
    context = plain.tokens[:, :3]
    cont = decoding.decode(model, params, text, max_tokens=5, min_tokens=5, context=context)
    np.testing.assert_array_equal(cont.tokens, plain.tokens[:, 3:8])  # greedy continuation of its own start
    with pytest.raises(ValueError, match="positions"):
        decoding.decode(model, params, text, max_tokens=12, context=context)


def test_length_rule_holds_the_last_code_and_frame():
    from handx_jax.autoregressive.sampling import fit_frames, hold_after_end

    codes = np.array([[4, 5, 6, -1], [7, -1, -1, -1], [1, 2, 3, 9]])
    held = hold_after_end(codes, np.array([3, 1, 4]))
    np.testing.assert_array_equal(held, [[4, 5, 6, 6], [7, 7, 7, 7], [1, 2, 3, 9]])
    feats = np.arange(3 * 8, dtype=np.float32).reshape(3, 8, 1)  # 4 codes x 2 frames
    out = fit_frames(feats, np.array([6, 2, 8]), 10)
    assert out.shape == (3, 10, 1)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 2, 3, 4, 5, 5, 5, 5, 5])
    np.testing.assert_array_equal(out[1, :, 0], [8, 9] + [9] * 8)
    np.testing.assert_array_equal(out[2, :, 0], list(range(16, 24)) + [23, 23])
    np.testing.assert_array_equal(fit_frames(feats, np.array([8, 8, 8]), 5)[:, :, 0], feats[:, :5, 0])
