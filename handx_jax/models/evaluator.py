"""TMR-style contrastive text-motion evaluator.

Two encoders map into one latent space (256-D by default):
- text: the project's treble text encoder (left, right and relation texts through one
  shared transformer, one learned CLS per role, summed), then a linear map to the latent;
- motion: normalised global joint positions (T, 126) -> linear -> learned CLS token +
  sinusoidal positions -> transformer encoder (key-padding mask) -> CLS -> linear.
Latents are L2-normalised; training is symmetric InfoNCE over the batch with a fixed
temperature (0.07), so Euclidean distances between latents rank like cosine similarity.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from handx_jax.models.transformer import Dense, Encoder, LayerNorm, _param, constrain, sinusoidal_table
from handx_jax.text.encoder import TrebleTextEncoder, stack_tokens


def l2_normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    return x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


class MotionEncoder(nn.Module):
    """Motion features (B, T, F) with a frame mask (B, T) -> latent (B, latent_dim), unnormalised."""

    num_layers: int
    d_model: int
    num_heads: int
    mlp_dim: int
    latent_dim: int = 256
    max_len: int = 60
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_btf: jax.Array, mask_bt: jax.Array, deterministic: bool = True) -> jax.Array:
        b, length, _ = x_btf.shape
        if length > self.max_len:
            raise ValueError(f"MotionEncoder: {length} frames exceed max_len {self.max_len}")
        h = Dense(self.d_model, ("feature", "embed"), dtype=self.dtype, name="input_projection")(x_btf)
        cls = _param(self, "cls", nn.initializers.normal(0.02), (self.d_model,), ("embed",), jnp.float32)
        seq = jnp.concatenate([jnp.broadcast_to(cls.astype(h.dtype), (b, 1, self.d_model)), h], axis=1)
        seq = constrain(seq + sinusoidal_table(length + 1, self.d_model).astype(h.dtype))
        key_mask = jnp.concatenate([jnp.ones((b, 1), jnp.float32), mask_bt.astype(jnp.float32)], axis=1)
        seq = Encoder(self.num_layers, self.num_heads, self.mlp_dim, self.dropout_rate, dtype=self.dtype,
                      name="encoder")(seq, key_mask, deterministic)
        return Dense(self.latent_dim, ("embed", None), name="latent_projection")(seq[:, 0]).astype(jnp.float32)


class TextMotionEvaluator(nn.Module):
    """Text and motion encoders sharing a latent space; `__call__` returns both latents."""

    feature_dim: int = 126
    latent_dim: int = 256
    max_len: int = 60
    num_layers: int = 4
    d_model: int = 256
    num_heads: int = 4
    mlp_dim: int = 1024
    vocab_size: int = 2000
    text_max_len: int = 48
    text_layers: int = 2
    text_d_model: int = 256
    text_heads: int = 4
    text_mlp_dim: int = 1024
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    def setup(self):
        self.text_encoder = TrebleTextEncoder(
            self.vocab_size, self.text_max_len, self.text_layers, self.text_d_model, self.text_heads,
            self.text_mlp_dim, self.dropout_rate, dtype=self.dtype)
        self.text_norm = LayerNorm()
        self.text_projection = Dense(self.latent_dim, ("embed", None))
        self.motion_encoder = MotionEncoder(
            self.num_layers, self.d_model, self.num_heads, self.mlp_dim, self.latent_dim, self.max_len,
            self.dropout_rate, self.dtype)

    def encode_text(self, text: dict, deterministic: bool = True) -> jax.Array:
        """Batch dict with `tokens_<role>` (+ `_mask`) -> L2-normalised latents (B, latent_dim)."""
        tokens, masks = stack_tokens(text)
        h = self.text_encoder(tokens, masks, deterministic)
        return l2_normalize(self.text_projection(self.text_norm(h)).astype(jnp.float32))

    def encode_text_roles(self, text: dict) -> jax.Array:
        """Each role's CLS output of the text encoder (B, 3, text_d_model), before the sum:
        what a frozen text tower hands a generator as its caption embeddings."""
        tokens, masks = stack_tokens(text)
        return self.text_encoder(tokens, masks, True, per_role=True)

    def encode_motion(self, x_btf: jax.Array, mask_bt: jax.Array, deterministic: bool = True) -> jax.Array:
        """Normalised features (B, T, F) and mask (B, T) -> L2-normalised latents (B, latent_dim)."""
        if x_btf.shape[-1] != self.feature_dim:
            raise ValueError(f"TextMotionEvaluator: features have {x_btf.shape[-1]} channels, expected {self.feature_dim}")
        return l2_normalize(self.motion_encoder(x_btf, mask_bt, deterministic))

    def __call__(self, text: dict, x_btf: jax.Array, mask_bt: jax.Array, deterministic: bool = True):
        return self.encode_text(text, deterministic), self.encode_motion(x_btf, mask_bt, deterministic)


def info_nce(text_bd: jax.Array, motion_bd: jax.Array, temperature: float = 0.07) -> tuple[jax.Array, dict]:
    """Symmetric InfoNCE over a batch of matched (text, motion) latents (L2-normalised).

    Returns the loss and the in-batch top-1 retrieval accuracy (text -> motion) for logs.
    """
    logits = jnp.einsum("id,jd->ij", text_bd, motion_bd) / temperature
    labels = jnp.arange(logits.shape[0])
    t2m = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    m2t = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=1) == labels)
    return 0.5 * (t2m + m2t), {"loss_t2m": t2m, "loss_m2t": m2t, "batch_r1": accuracy}


def model_from_config(config) -> TextMotionEvaluator:
    """Build the evaluator from `configs/evaluator.py` fields."""
    m = config.model
    return TextMotionEvaluator(
        feature_dim=int(m.feature_dim), latent_dim=int(m.latent_dim), max_len=int(config.data.seq_len),
        num_layers=int(m.num_layers), d_model=int(m.d_model), num_heads=int(m.num_heads),
        mlp_dim=int(m.mlp_dim), vocab_size=int(m.vocab_size), text_max_len=int(m.text_max_len),
        text_layers=int(m.text_layers), text_d_model=int(m.text_d_model), text_heads=int(m.text_heads),
        text_mlp_dim=int(m.text_mlp_dim), dropout_rate=float(m.dropout), dtype=jnp.dtype(m.dtype))


def forward_flops(config) -> float:
    """Analytic forward matmul FLOPs per (text triple, motion) example."""
    from handx_jax.train import flops as flops_lib

    m = config.model
    s = int(config.data.seq_len) + 1
    motion = int(m.num_layers) * flops_lib.transformer_layer_forward_flops(s, int(m.d_model), int(m.mlp_dim))
    motion += flops_lib.dense_flops(s - 1, int(m.feature_dim), int(m.d_model))
    motion += flops_lib.dense_flops(1, int(m.d_model), int(m.latent_dim))
    # Three roles, each a sequence of text_max_len tokens plus its CLS.
    text = int(m.text_layers) * flops_lib.transformer_layer_forward_flops(
        int(m.text_max_len) + 1, int(m.text_d_model), int(m.text_mlp_dim)) * 3
    text += flops_lib.dense_flops(1, int(m.text_d_model), int(m.latent_dim))
    return float(motion + text)
