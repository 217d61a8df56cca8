"""MDM-style transformer denoiser, predicting x0.

Sequence layout: one prefix token (timestep embedding + text condition) followed by the
T motion frames projected from the 168-D features; positions (sinusoidal or learned) are
added to the whole sequence; a stack of encoder layers with a key-padding mask from the
frame mask; an output projection back to the features.

Two entry points so sampling encodes the text once: `encode_condition(text)` -> (B, d)
and `denoise(x_t, t, mask, cond)` -> x0_hat. A zero condition vector is the null
condition of classifier-free guidance (training zeroes dropped conditions the same way).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from handx_jax.models.transformer import Dense, Encoder, _param, constrain, sinusoidal_embedding, sinusoidal_table
from handx_jax.text.encoder import PrecomputedTextProjection, TrebleTextEncoder, stack_tokens


class MotionDenoiser(nn.Module):
    """x0-predicting denoiser with a treble text encoder (or precomputed text embeddings)."""

    feature_dim: int
    num_layers: int
    d_model: int
    num_heads: int
    mlp_dim: int
    max_len: int = 60
    dropout_rate: float = 0.0
    positions: str = "sinusoidal"  # or "learned"
    pre_norm: bool = True
    # Text side.
    text_source: str = "tokens"  # or "embeddings"
    vocab_size: int = 2000
    text_max_len: int = 48
    text_layers: int = 2
    text_d_model: int = 256
    text_heads: int = 4
    text_mlp_dim: int = 1024
    # Stop gradients into the text encoder (used with `model.text_init_from`: a contrastively
    # trained text tower kept as it is; the condition projection still trains).
    text_frozen: bool = False
    dtype: Any = jnp.float32

    def setup(self):
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"model.positions must be sinusoidal or learned, got {self.positions!r}")
        if self.text_source == "tokens":
            self.text_encoder = TrebleTextEncoder(
                self.vocab_size, self.text_max_len, self.text_layers, self.text_d_model,
                self.text_heads, self.text_mlp_dim, self.dropout_rate, dtype=self.dtype,
            )
        elif self.text_source == "embeddings":
            self.text_encoder = PrecomputedTextProjection(self.text_d_model)
        else:
            raise ValueError(f"model.text_source must be tokens or embeddings, got {self.text_source!r}")
        self.cond_projection = Dense(self.d_model, (None, "embed"), name="cond_projection")
        self.time_mlp_in = Dense(self.d_model, ("embed", "mlp"), name="time_mlp_in")
        self.time_mlp_out = Dense(self.d_model, ("mlp", "embed"), name="time_mlp_out")
        self.input_projection = Dense(self.d_model, ("feature", "embed"), dtype=self.dtype, name="input_projection")
        self.output_projection = Dense(self.feature_dim, ("embed", "feature"), dtype=self.dtype, name="output_projection")
        if self.positions == "learned":
            self.position_embedding = self.param(
                "position_embedding",
                nn.with_logical_partitioning(nn.initializers.normal(0.02), ("length", "embed")),
                (self.max_len + 1, self.d_model), jnp.float32,
            )
        self.encoder = Encoder(
            self.num_layers, self.num_heads, self.mlp_dim, self.dropout_rate,
            pre_norm=self.pre_norm, dtype=self.dtype, name="encoder",
        )

    def encode_condition(self, text: dict, deterministic: bool = True) -> jax.Array:
        """Text inputs -> condition (B, d_model). `text` holds `tokens_<role>` (+ masks) or `text_embedding`."""
        if self.text_source == "tokens":
            tokens, masks = stack_tokens(text)
            h = self.text_encoder(tokens, masks, deterministic)
        else:
            h = self.text_encoder(text["text_embedding"], deterministic)
        if self.text_frozen:
            h = jax.lax.stop_gradient(h)
        return self.cond_projection(h)

    def denoise(self, x_btf: jax.Array, t_b: jax.Array, mask_bt: jax.Array, cond_bd: jax.Array, deterministic: bool = True) -> jax.Array:
        """Predict x0 (B, T, F) from x_t, the (original-scale) timestep and the condition."""
        b, length, f = x_btf.shape
        if f != self.feature_dim:
            raise ValueError(f"MotionDenoiser: features have {f} channels, model expects {self.feature_dim}")
        if length > self.max_len:
            raise ValueError(f"MotionDenoiser: {length} frames exceed max_len {self.max_len}")
        temb = sinusoidal_embedding(t_b, self.d_model)
        temb = self.time_mlp_out(nn.silu(self.time_mlp_in(temb)))
        prefix = (temb + cond_bd).astype(self.dtype)[:, None, :]
        h = self.input_projection(x_btf)
        seq = jnp.concatenate([prefix, h], axis=1)
        if self.positions == "learned":
            pos = self.position_embedding[: length + 1]
        else:
            pos = sinusoidal_table(length + 1, self.d_model)
        seq = constrain(seq + pos.astype(self.dtype))
        key_mask = jnp.concatenate([jnp.ones((b, 1), jnp.float32), mask_bt.astype(jnp.float32)], axis=1)
        seq = self.encoder(seq, key_mask, deterministic)
        return self.output_projection(seq[:, 1:]).astype(jnp.float32)

    def __call__(self, x_btf, t_b, mask_bt, text: dict, drop_cond_b=None, deterministic: bool = True):
        """Training forward: encode text, zero dropped conditions, denoise."""
        cond = self.encode_condition(text, deterministic)
        if drop_cond_b is not None:
            cond = jnp.where(drop_cond_b[:, None], 0.0, cond)
        return self.denoise(x_btf, t_b, mask_bt, cond, deterministic)


TEXT_MODES = ("tower", "file", "scratch")


def text_source(config) -> str:
    """What the denoiser reads: 'embeddings' (precomputed, `model.text` tower or file) or
    'tokens' (`model.text = "scratch"`: a text encoder trained with it)."""
    mode = config.model.get("text")
    if mode is None:  # run configs written before `model.text` existed
        return "embeddings" if config.model.get("text_embeddings_path") else "tokens"
    if mode not in TEXT_MODES:
        raise ValueError(f"config.model.text {mode!r} unknown; choose one of {', '.join(TEXT_MODES)}")
    return "tokens" if mode == "scratch" else "embeddings"


def feature_dim(config) -> int:
    """Motion feature width of `config.data.representation` (168 for joint_pos_w_scalar_rot)."""
    from handx_jax.data.representations import FEATURE_DIMS

    rep = str(config.data.representation)
    if rep not in FEATURE_DIMS:
        raise ValueError(f"config.data.representation {rep!r} unknown; choose one of {', '.join(FEATURE_DIMS)}")
    return FEATURE_DIMS[rep]


def model_from_config(config) -> MotionDenoiser:
    """Build the denoiser from `config.model` and `config.data`."""
    m = config.model
    return MotionDenoiser(
        feature_dim=feature_dim(config), num_layers=int(m.num_layers), d_model=int(m.d_model),
        num_heads=int(m.num_heads), mlp_dim=int(m.mlp_dim), max_len=int(config.data.seq_len),
        dropout_rate=float(m.dropout), positions=str(m.positions), pre_norm=bool(m.pre_norm),
        text_source=text_source(config), vocab_size=int(m.vocab_size), text_max_len=int(m.text_max_len),
        text_layers=int(m.text_layers), text_d_model=int(m.text_d_model), text_heads=int(m.text_heads),
        text_mlp_dim=int(m.text_mlp_dim), text_frozen=bool(m.get("text_frozen", False)), dtype=jnp.dtype(m.dtype),
    )


def forward_flops(config) -> float:
    """Analytic forward matmul FLOPs per example (2 per multiply-add), attention included."""
    m = config.model
    t = int(config.data.seq_len)
    s = t + 1
    d, ff, layers = int(m.d_model), int(m.mlp_dim), int(m.num_layers)
    per_layer = 2 * s * d * 3 * d + 2 * 2 * s * s * d + 2 * s * d * d + 2 * 2 * s * d * ff
    flops = layers * per_layer
    f = feature_dim(config)
    flops += 2 * t * f * d * 2  # input and output projections
    flops += 2 * 2 * d * d + 2 * int(m.text_d_model) * d  # timestep MLP, condition projection
    if text_source(config) == "embeddings":
        flops += 2 * 3 * int(m.get("text_embed_dim", m.text_d_model)) * int(m.text_d_model)  # per-role projections
    else:
        dt, fft, lt = int(m.text_d_model), int(m.text_mlp_dim), int(m.text_layers)
        st = int(m.text_max_len) + 1
        per_text_layer = 2 * st * dt * 3 * dt + 2 * 2 * st * st * dt + 2 * st * dt * dt + 2 * 2 * st * dt * fft
        flops += 3 * lt * per_text_layer
    return float(flops)
