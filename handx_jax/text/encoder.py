"""Linen text encoders producing the motion model's condition vector.

`TrebleTextEncoder`: the left, right and relation texts are encoded separately through one
shared transformer; each role prepends its own learned CLS token; the three CLS outputs
are summed (HandX found concatenation confused the hands). `PrecomputedTextProjection`
is the alternative when text embeddings come from a file: one learned projection per role,
summed the same way.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from handx_jax.models.transformer import Encoder, _param, constrain
from handx_jax.text.tokenizer import ROLES


def stack_tokens(batch: dict) -> tuple[jax.Array, jax.Array]:
    """(B, 3, L) token ids and masks from a batch's `tokens_<role>` / `tokens_<role>_mask`."""
    tokens = jnp.stack([batch[f"tokens_{r}"] for r in ROLES], axis=1)
    masks = []
    for r in ROLES:
        key = f"tokens_{r}_mask"
        masks.append(batch[key] if key in batch else (batch[f"tokens_{r}"] != 0))
    return tokens, jnp.stack(masks, axis=1).astype(jnp.float32)


class TrebleTextEncoder(nn.Module):
    """Tokens (B, 3, L) -> condition (B, d): shared transformer, per-role CLS, summed."""

    vocab_size: int
    max_len: int
    num_layers: int
    d_model: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens_brl: jax.Array, mask_brl: jax.Array, deterministic: bool = True,
                 per_role: bool = False) -> jax.Array:
        """(B, d), or (B, R, d) per role's CLS output before the sum when `per_role`."""
        b, roles, length = tokens_brl.shape
        if length > self.max_len:
            raise ValueError(f"TrebleTextEncoder: {length} tokens exceed max_len {self.max_len}")
        table = _param(self, "token_embedding", nn.initializers.normal(0.02), (self.vocab_size, self.d_model), ("vocab", "embed"), jnp.float32)
        cls = _param(self, "cls", nn.initializers.normal(0.02), (roles, self.d_model), (None, "embed"), jnp.float32)
        pos = _param(self, "position_embedding", nn.initializers.normal(0.02), (self.max_len + 1, self.d_model), ("length", "embed"), jnp.float32)
        x = jnp.take(table, tokens_brl, axis=0)  # (B, R, L, d)
        x = jnp.concatenate([jnp.broadcast_to(cls[None, :, None, :], (b, roles, 1, self.d_model)), x], axis=2)
        x = x + pos[: length + 1]
        x = x.reshape(b * roles, length + 1, self.d_model)
        mask = jnp.concatenate([jnp.ones((b, roles, 1), mask_brl.dtype), mask_brl], axis=2).reshape(b * roles, length + 1)
        x = constrain(x)
        x = Encoder(self.num_layers, self.num_heads, self.mlp_dim, self.dropout_rate, dtype=self.dtype, name="encoder")(x, mask, deterministic)
        cls_out = x[:, 0].reshape(b, roles, self.d_model).astype(jnp.float32)
        return cls_out if per_role else cls_out.sum(axis=1)


class PrecomputedTextProjection(nn.Module):
    """Embeddings (B, 3, E) from a file -> condition (B, d): per-role projection, summed.

    Each role's kernel starts as a (rectangular) identity, so at initialisation the
    condition is the sum of the role embeddings, the combination a treble text tower is
    trained to make discriminative; training then adapts each role's projection. (A random
    initialisation, or a LayerNorm on the sum, made a T model on a two-caption toy ignore
    one caption after 300 steps where this start follows both.)
    """

    d_model: int

    @nn.compact
    def __call__(self, emb_bre: jax.Array, deterministic: bool = True) -> jax.Array:
        _, roles, e = emb_bre.shape
        w = _param(self, "kernel", _identity_per_role, (roles, e, self.d_model), (None, None, "embed"), jnp.float32)
        bias = _param(self, "bias", nn.initializers.zeros, (self.d_model,), ("embed",), jnp.float32)
        return jnp.einsum("bre,red->bd", emb_bre.astype(jnp.float32), w) + bias


def _identity_per_role(key, shape, dtype=jnp.float32):
    """(R, E, d) kernels, each the identity on min(E, d) dimensions (the key is unused)."""
    del key
    return jnp.broadcast_to(jnp.eye(shape[1], shape[2], dtype=dtype), shape)
