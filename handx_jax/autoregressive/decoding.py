"""Batched autoregressive decoding of motion tokens inside one jitted `lax.while_loop`.

Every row starts from its text prefix (optionally followed by `context` tokens: the last
tokens of a previous stage, for long-horizon generation) and draws up to `max_tokens` new
tokens, stopping early once every row has produced END. Token choice: greedy
(`temperature` 0) or sampling at a temperature with optional top-k and top-p (nucleus)
filtering; PAD is never drawn and END not before `min_tokens` tokens. Classifier-free
guidance runs conditional and null-prefix rows in one batch and mixes their logits
`uncond + guidance * (cond - uncond)`.

With `use_cache=True` (default) each step feeds one token through the key/value cache;
`use_cache=False` recomputes the whole sequence every step (HandX's way; kept for the
equivalence test and the throughput benchmark).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.models.prefix_lm import PrefixLM, end_id, init_cache, pad_id

NEG_INF = -jnp.inf


class Decoded(NamedTuple):
    tokens: np.ndarray  # (B, max_tokens) int32 code ids; END and everything after it are -1
    lengths: np.ndarray  # (B,) int32 codes before END (max_tokens when END never came)


def filter_logits(logits_bv: jax.Array, top_k, top_p) -> jax.Array:
    """Set logits outside the top-k (k <= 0: all) and outside the smallest set of tokens
    whose probability reaches top_p (>= 1: all) to -inf. Ties at a cut are kept."""
    v = logits_bv.shape[-1]
    top_k = jnp.asarray(top_k, jnp.int32)
    k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)
    desc = -jnp.sort(-logits_bv, axis=-1)
    kth = jnp.take_along_axis(desc, jnp.broadcast_to(k - 1, desc.shape[:-1])[..., None], axis=-1)
    logits_bv = jnp.where(logits_bv < kth, NEG_INF, logits_bv)
    desc = -jnp.sort(-logits_bv, axis=-1)
    probs = jax.nn.softmax(desc, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of the strictly better tokens
    kept = jnp.maximum(jnp.sum(before < top_p, axis=-1), 1)
    cut = jnp.take_along_axis(desc, (kept - 1)[..., None], axis=-1)
    return jnp.where(logits_bv < cut, NEG_INF, logits_bv)


def choose(logits_bv, rng, temperature, top_k, top_p):
    """Greedy argmax when temperature <= 0, else a draw from the filtered tempered logits."""
    greedy = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
    t = jnp.maximum(jnp.asarray(temperature, jnp.float32), 1e-6)
    drawn = jax.random.categorical(rng, filter_logits(logits_bv / t, top_k, top_p), axis=-1).astype(jnp.int32)
    return jnp.where(temperature > 0, drawn, greedy)


def _mix(logits, batch, guided, guidance):
    if not guided:
        return logits
    cond, uncond = logits[:batch], logits[batch:]
    return uncond + guidance * (cond - uncond)


@functools.lru_cache(maxsize=32)
def _decoder(model: PrefixLM, max_tokens: int, context_len: int, guided: bool, use_cache: bool):
    end, pad = end_id(model.codebook_size), pad_id(model.codebook_size)
    p = model.num_prefix
    needed = p + context_len + max_tokens
    if needed > model.max_len:
        raise ValueError(f"decoding {context_len} context + {max_tokens} new tokens needs {needed} positions; "
                         f"the model holds {model.max_len} (model.max_tokens)")

    def run(params, text_bre, context_bc, rng, temperature, top_k, top_p, guidance, min_tokens):
        b = text_bre.shape[0]
        variables = {"params": params}
        drop = jnp.zeros((b,), bool)
        if guided:
            text_bre = jnp.concatenate([text_bre, text_bre])
            context_bc = jnp.concatenate([context_bc, context_bc])
            drop = jnp.concatenate([drop, jnp.ones((b,), bool)])
        rows = text_bre.shape[0]

        def pick(logits, i, key):
            logits = _mix(logits, b, guided, guidance)
            vocab = jnp.arange(logits.shape[-1])
            banned = (vocab == pad) | ((vocab == end) & (i < min_tokens))
            return choose(jnp.where(banned, NEG_INF, logits), key, temperature, top_k, top_p)

        def record(out, done, i, tok):
            tok = jnp.where(done, -1, tok)
            out = out.at[:, i].set(jnp.where(tok == end, -1, tok))
            return out, done | (tok == end), tok

        out0 = jnp.full((b, max_tokens), -1, jnp.int32)
        done0 = jnp.zeros((b,), bool)
        cond = lambda s: jnp.logical_and(s[0] < max_tokens, jnp.logical_not(jnp.all(s[2])))

        if use_cache:
            cache = init_cache(model, rows, model.dtype)
            logits0, cache = model.apply(variables, text_bre, context_bc, drop, cache, method=PrefixLM.prefill)

            def body(s):
                i, out, done, logits, cache, key = s
                key, sub = jax.random.split(key)
                out, done, tok = record(out, done, i, pick(logits, i, sub))
                feed = jnp.where(tok < 0, pad, tok)
                feed = jnp.concatenate([feed, feed]) if guided else feed
                logits, cache = model.apply(variables, feed, p + context_len + i, cache, method=PrefixLM.step)
                return i + 1, out, done, logits, cache, key

            state = (jnp.int32(0), out0, done0, logits0, cache, rng)
        else:
            buffer0 = jnp.concatenate([context_bc, jnp.full((rows, max_tokens - 1), pad, jnp.int32)], axis=1)

            def body(s):
                i, out, done, buffer, key = s
                all_logits = model.apply(variables, text_bre, buffer, drop)
                logits = jax.lax.dynamic_index_in_dim(all_logits, context_len + i, axis=1, keepdims=False)
                key, sub = jax.random.split(key)
                out, done, tok = record(out, done, i, pick(logits, i, sub))
                feed = jnp.where(tok < 0, pad, tok)
                feed = jnp.concatenate([feed, feed]) if guided else feed
                column = jnp.minimum(context_len + i, buffer.shape[1] - 1)
                buffer = jax.lax.dynamic_update_slice_in_dim(buffer, feed[:, None], column, axis=1)
                return i + 1, out, done, buffer, key

            state = (jnp.int32(0), out0, done0, buffer0, rng)
        final = jax.lax.while_loop(cond, body, state)
        out, done = final[1], final[2]
        lengths = jnp.where(out >= 0, 1, 0).sum(axis=1).astype(jnp.int32)
        return out, lengths

    return jax.jit(run)


def decode(model: PrefixLM, params, text_bre, *, max_tokens: int, seed: int = 0, rng=None, temperature: float = 0.0,
           top_k: int = 0, top_p: float = 1.0, guidance: float | None = None, context=None, min_tokens: int = 1,
           use_cache: bool = True) -> Decoded:
    """Decode up to `max_tokens` new code tokens per row of `text_bre` (B, 3, E).

    `context` (B, C) int32 code ids continue an earlier stage; `guidance` None or 1 means
    no classifier-free guidance. Returns numpy `Decoded(tokens, lengths)`.
    """
    text = jnp.asarray(text_bre, jnp.float32)
    b = text.shape[0]
    ctx = np.zeros((b, 0), np.int32) if context is None else np.asarray(context, np.int32)
    if ctx.ndim != 2 or ctx.shape[0] != b:
        raise ValueError(f"context must be (B={b}, C) token ids, got {ctx.shape}")
    if ctx.size and (ctx.min() < 0 or ctx.max() >= model.codebook_size):
        raise ValueError(f"context token ids must lie in [0, {model.codebook_size}), got [{ctx.min()}, {ctx.max()}]")
    if not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")
    guided = guidance is not None and float(guidance) != 1.0
    fn = _decoder(model, int(max_tokens), int(ctx.shape[1]), guided, bool(use_cache))
    key = jax.random.key(seed) if rng is None else rng
    out, lengths = fn(params, text, jnp.asarray(ctx), key, jnp.float32(temperature), jnp.int32(top_k),
                      jnp.float32(top_p), jnp.float32(1.0 if guidance is None else guidance), jnp.int32(min_tokens))
    return Decoded(np.asarray(out), np.asarray(lengths))
