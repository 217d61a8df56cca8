"""LLaMA-style prefix language model over motion tokens, conditioned on caption embeddings.

Sequence: three text prefix tokens (the left, right and relation caption embeddings of the
frozen text tower, each projected to `d_model` by its own role kernel) followed by motion
tokens. Prefix tokens attend to each other bidirectionally; motion tokens attend to the
prefix and causally to earlier motion tokens (the prefix-LM mask). The output at the last
prefix position predicts the first motion token, so `n` motion inputs give `n + 1`
predictions. Vocabulary = FSQ codebook + END + PAD (PAD is never a target).

Blocks: pre-RMSNorm, fused qkv, rotary positions over the whole sequence (prefix
included), SwiGLU feed-forward, no biases anywhere. A dropped caption (classifier-free
guidance) replaces the three prefix tokens by learned null tokens.

Decoding reads and writes a key/value cache: `init_cache` makes it, `prefill` runs the
prefix (and any context tokens) through it, `step` feeds one token at a given position.
Running `prefill` + `step`s reproduces `__call__`'s logits (tests/autoregressive).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from handx_jax.models.transformer import _param, constrain, dense_nd
from handx_jax.text.encoder import _identity_per_role

NUM_PREFIX = 3  # left, right, relation
SPECIAL_TOKENS = 2  # END, PAD after the codebook
MASKED = -1e9  # additive attention bias where attending is not allowed
init_normal = nn.initializers.normal(0.02)


def swiglu_hidden(d_model: int, multiple: int = 256) -> int:
    """SwiGLU width: 8 d / 3 rounded up to a multiple of `multiple` (LLaMA's rule)."""
    return int(math.ceil(8 * d_model / 3 / multiple) * multiple)


def end_id(codebook_size: int) -> int:
    return int(codebook_size)


def pad_id(codebook_size: int) -> int:
    return int(codebook_size) + 1


def rms_norm(x: jax.Array, scale: jax.Array, epsilon: float = 1e-5) -> jax.Array:
    x32 = x.astype(jnp.float32)
    inv = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + epsilon)
    return x32 * inv * scale.astype(jnp.float32)


def rotary(x_bthk: jax.Array, positions_t: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotate channel pairs (i, i + K/2) of each head by angle position * base^(-2i/K)."""
    k = x_bthk.shape[-1]
    half = k // 2
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / k)
    angles = positions_t.astype(jnp.float32)[:, None] * freqs  # (T, K/2)
    cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
    x32 = x_bthk.astype(jnp.float32)
    a, b = x32[..., :half], x32[..., half:2 * half]
    out = jnp.concatenate([a * cos - b * sin, a * sin + b * cos, x32[..., 2 * half:]], axis=-1)
    return out.astype(x_bthk.dtype)


def prefix_lm_bias(query_positions: jax.Array, key_positions: jax.Array, num_prefix: int) -> jax.Array:
    """(Tq, Tk) additive bias: a query sees every prefix key and every key at or before it."""
    q, k = query_positions[:, None], key_positions[None, :]
    allowed = jnp.logical_or(k <= q, k < num_prefix)
    return jnp.where(allowed, 0.0, MASKED).astype(jnp.float32)


class RMSNorm(nn.Module):
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",), jnp.float32)
        return rms_norm(x, scale, self.epsilon).astype(self.dtype)


class Block(nn.Module):
    """Pre-norm decoder block; `cache` = {'k', 'v'} (B, S, H, K) is read and written at `start`."""

    num_heads: int
    mlp_dim: int
    num_prefix: int = NUM_PREFIX
    rope_base: float = 10000.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_btd, start, cache=None):
        b, t, d = x_btd.shape
        h = self.num_heads
        if d % h:
            raise ValueError(f"PrefixLM: width {d} is not divisible by {h} heads")
        kd = d // h
        w_qkv = _param(self, "qkv_kernel", init_normal, (d, 3, h, kd), ("embed", None, "heads", "kv"), jnp.float32)
        w_out = _param(self, "out_kernel", init_normal, (h, kd, d), ("heads", "kv", "embed"), jnp.float32)
        w_in = _param(self, "mlp_in_kernel", init_normal, (d, 2, self.mlp_dim), ("embed", None, "mlp"), jnp.float32)
        w_down = _param(self, "mlp_out_kernel", init_normal, (self.mlp_dim, d), ("mlp", "embed"), jnp.float32)

        positions = start + jnp.arange(t)
        y = RMSNorm(dtype=self.dtype, name="attention_norm")(x_btd)
        qkv = nn.with_logical_constraint(dense_nd(y, w_qkv.astype(self.dtype)), ("batch", "length", None, "heads", "kv"))
        q = rotary(qkv[:, :, 0], positions, self.rope_base) * (1.0 / math.sqrt(kd))
        k = rotary(qkv[:, :, 1], positions, self.rope_base)
        v = qkv[:, :, 2]
        if cache is not None:
            k_all = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), start, axis=1)
            v_all = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), start, axis=1)
            cache = {"k": k_all, "v": v_all}
            k, v = k_all.astype(self.dtype), v_all.astype(self.dtype)
        key_positions = jnp.arange(k.shape[1])
        logits = jnp.einsum("bthk,bshk->bhts", q, k).astype(jnp.float32)
        logits = logits + prefix_lm_bias(positions, key_positions, self.num_prefix)[None, None]
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        mixed = jnp.einsum("bhts,bshk->bthk", weights, v)
        x = constrain(x_btd + dense_nd(mixed, w_out.astype(self.dtype), in_dims=2))

        y = RMSNorm(dtype=self.dtype, name="mlp_norm")(x)
        gate_up = dense_nd(y, w_in.astype(self.dtype))  # (B, T, 2, F)
        hidden = nn.silu(gate_up[:, :, 0]) * gate_up[:, :, 1]
        hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
        x = constrain(x + dense_nd(hidden, w_down.astype(self.dtype)))
        return x, cache


class PrefixLM(nn.Module):
    """Text-prefix decoder-only transformer over `codebook_size + 2` token ids."""

    codebook_size: int
    num_layers: int
    num_heads: int
    d_model: int
    mlp_dim: int
    text_embed_dim: int
    max_len: int  # prefix + motion positions the cache holds
    num_prefix: int = NUM_PREFIX
    rope_base: float = 10000.0
    dtype: Any = jnp.float32

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + SPECIAL_TOKENS

    def setup(self):
        d = self.d_model
        self.token_embedding = _param(self, "token_embedding", init_normal, (self.vocab_size, d), ("vocab", "embed"), jnp.float32)
        self.text_projection = _param(self, "text_projection", _identity_per_role, (self.num_prefix, self.text_embed_dim, d),
                                      (None, None, "embed"), jnp.float32)
        self.null_prefix = _param(self, "null_prefix", init_normal, (self.num_prefix, d), (None, "embed"), jnp.float32)
        self.blocks = [Block(self.num_heads, self.mlp_dim, self.num_prefix, self.rope_base, self.dtype, name=f"layer_{i}")
                       for i in range(self.num_layers)]
        self.final_norm = RMSNorm(dtype=self.dtype)
        self.head = _param(self, "head", init_normal, (d, self.vocab_size), ("embed", "vocab"), jnp.float32)

    # -- pieces ------------------------------------------------------------------------
    def prefix(self, text_bre, drop_b=None):
        """(B, 3, E) caption embeddings -> (B, 3, d) prefix tokens (null tokens where dropped)."""
        if text_bre.shape[1:] != (self.num_prefix, self.text_embed_dim):
            raise ValueError(f"PrefixLM: text embeddings {text_bre.shape[1:]}, expected ({self.num_prefix}, {self.text_embed_dim})")
        p = jnp.einsum("bre,red->brd", text_bre.astype(jnp.float32), self.text_projection)
        if drop_b is not None:
            p = jnp.where(drop_b[:, None, None], self.null_prefix[None], p)
        return p.astype(self.dtype)

    def embed(self, tokens_bl):
        return jnp.take(self.token_embedding, tokens_bl, axis=0).astype(self.dtype)

    def logits(self, h_btd):
        y = self.final_norm(h_btd)
        out = dense_nd(y, self.head.astype(self.dtype)).astype(jnp.float32)
        return nn.with_logical_constraint(out, ("batch", "length", "vocab"))

    def run(self, x_btd, start, cache=None):
        x = constrain(x_btd)
        new_cache = [] if cache is not None else None
        for i, block in enumerate(self.blocks):
            x, c = block(x, start, None if cache is None else cache[i])
            if cache is not None:
                new_cache.append(c)
        return x, new_cache

    # -- entry points ------------------------------------------------------------------
    def __call__(self, text_bre, tokens_bl, drop_b=None):
        """Teacher-forced logits (B, L + 1, V): row j predicts motion token j."""
        x = jnp.concatenate([self.prefix(text_bre, drop_b), self.embed(tokens_bl)], axis=1)
        if x.shape[1] > self.max_len:
            raise ValueError(f"PrefixLM: {x.shape[1]} positions exceed max_len {self.max_len}")
        h, _ = self.run(x, 0)
        return self.logits(h[:, self.num_prefix - 1:])

    def prefill(self, text_bre, context_bc, drop_b, cache):
        """Prefix plus `context_bc` (B, C) tokens into the cache; logits (B, V) for the next token."""
        x = self.prefix(text_bre, drop_b)
        if context_bc is not None and context_bc.shape[1]:
            x = jnp.concatenate([x, self.embed(context_bc)], axis=1)
        h, cache = self.run(x, 0, cache)
        return self.logits(h[:, -1:])[:, 0], cache

    def step(self, token_b, position, cache):
        """Feed one token at sequence `position`; logits (B, V) for the next one."""
        h, cache = self.run(self.embed(token_b[:, None]), position, cache)
        return self.logits(h)[:, 0], cache


def init_cache(model: PrefixLM, batch: int, dtype=jnp.float32) -> list:
    """Zero key/value cache: per layer {'k', 'v'} of (B, max_len, heads, head_dim)."""
    kd = model.d_model // model.num_heads
    shape = (batch, model.max_len, model.num_heads, kd)
    return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(model.num_layers)]


def parameter_counts(*, codebook_size: int, num_layers: int, d_model: int, mlp_dim: int, text_embed_dim: int,
                     num_prefix: int = NUM_PREFIX) -> dict:
    """Exact parameter counts by part: embedding, head, text (projection + null prefix), body
    (blocks + final norm); `total` and `non_embedding` (total less embedding and head)."""
    v, d = codebook_size + SPECIAL_TOKENS, d_model
    per_layer = 2 * d + 3 * d * d + d * d + 2 * d * mlp_dim + mlp_dim * d
    parts = {
        "embedding": v * d,
        "head": d * v,
        "text": num_prefix * text_embed_dim * d + num_prefix * d,
        "body": num_layers * per_layer + d,
    }
    parts["total"] = sum(parts.values())
    parts["non_embedding"] = parts["total"] - parts["embedding"] - parts["head"]
    return parts


def forward_flops(*, codebook_size: int, num_layers: int, d_model: int, mlp_dim: int, text_embed_dim: int,
                  motion_inputs: int, num_prefix: int = NUM_PREFIX) -> float:
    """Forward matmul FLOPs of one teacher-forced example (2 per multiply-add): text
    projection, qkv, attention scores and mixing over the full sequence, output projection,
    SwiGLU (three matrices) and the vocabulary head on the `motion_inputs + 1` predicting
    rows. The embedding lookup is a gather (no FLOPs)."""
    d, s = d_model, num_prefix + motion_inputs
    v = codebook_size + SPECIAL_TOKENS
    per_layer = 2 * s * d * 3 * d + 2 * 2 * s * s * d + 2 * s * d * d + 3 * 2 * s * d * mlp_dim
    text = 2 * num_prefix * text_embed_dim * d
    head = 2 * (motion_inputs + 1) * d * v
    return float(num_layers * per_layer + text + head)
