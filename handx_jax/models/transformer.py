"""Shared Linen transformer blocks with logical axis names on every parameter.

Used by the diffusion denoiser, the text encoder and (through the same blocks) the
evaluator encoders. Parameters are created with `nn.with_logical_partitioning` so a
logical-axis rule table maps them onto the `('data', 'fsdp', 'tensor')` mesh; big
activations are pinned with `nn.with_logical_constraint` (a no-op outside a mesh).

Speed notes (CPU first): q, k and v come from one fused kernel (one matmul instead of
three); dropout is off by default because generating its masks costs about a fifth of a
CPU training step; dense layers are flattened 2-D matmuls with an explicit backward, and
layer norm and GELU have one-pass backward passes (`layer_norm`, `gelu`). Mixed precision:
`dtype` is the compute dtype, `param_dtype` (float32) the stored one; layer norms, the
attention softmax and the logits are float32 whatever `dtype` is.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

ACTIVATION_AXES = ("batch", "length", "embed")
default_kernel_init = nn.initializers.xavier_uniform()


def _param(module: nn.Module, name: str, init: Callable, shape: Sequence[int], axes: Sequence[str | None], dtype: Dtype):
    """Create a parameter boxed with its logical axis names."""
    if len(shape) != len(axes):
        raise ValueError(f"{module.__class__.__name__}.{name}: shape {tuple(shape)} vs axes {tuple(axes)}")
    return module.param(name, nn.with_logical_partitioning(init, tuple(axes)), tuple(shape), dtype)


@jax.custom_vjp
def matmul_2d(x_nd: Array, w_df: Array) -> Array:
    """`x @ w` for 2-D operands with an explicit backward `dx = dy w^T`, `dW = x^T dy`.

    Why: left to autodiff, XLA's CPU backend contracts the batch*length dimension of the
    activation gradient `dy` by transposing `dy` and fuses that transposed copy into the
    whole chain of element-wise gradient ops that produces `dy` (residual stream, layer
    norms), recomputing the chain per element: those copies took over half of an S
    training step. Here `dy` is materialised once (optimization barrier) and the transposed
    operand is the saved activation `x`.
    """
    return jnp.dot(x_nd, w_df)


def _matmul_2d_fwd(x_nd, w_df):
    return jnp.dot(x_nd, w_df), (x_nd, w_df)


def _matmul_2d_bwd(res, dy_nf):
    x_nd, w_df = res
    dy_nf = jax.lax.optimization_barrier(dy_nf)
    return jnp.dot(dy_nf, w_df.T), jnp.dot(x_nd.T, dy_nf)


matmul_2d.defvjp(_matmul_2d_fwd, _matmul_2d_bwd)


def dense_nd(x: Array, w: Array, in_dims: int = 1) -> Array:
    """Contract the last `in_dims` axes of `x` with the first `in_dims` axes of `w`.

    Leading axes of `x` are flattened into one row axis so forward and backward are plain
    2-D matmuls (see `matmul_2d`); the result has shape `x.shape[:-in_dims] + w.shape[in_dims:]`.
    """
    lead, contract = x.shape[: x.ndim - in_dims], x.shape[x.ndim - in_dims:]
    if tuple(contract) != tuple(w.shape[:in_dims]):
        raise ValueError(f"dense_nd: input dims {tuple(contract)} do not match weight dims {tuple(w.shape[:in_dims])}")
    k = math.prod(contract)
    out = w.shape[in_dims:]
    y = matmul_2d(x.reshape(math.prod(lead), k), w.reshape(k, math.prod(out)))
    return y.reshape(*lead, *out)


def _layer_norm_parts(x, scale, bias, epsilon):
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    inv = jax.lax.rsqrt(var + epsilon)
    normed = (x32 - mean) * inv
    return normed * scale.astype(jnp.float32) + bias.astype(jnp.float32), normed, inv


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: Array, scale: Array, bias: Array, epsilon: float = 1e-5) -> Array:
    """Float32 layer normalisation over the last axis with a hand-written backward.

    Why: autodiff spreads the backward over several element-wise passes and reductions;
    this one needs the two row means of `g = dy * scale` and `g * x_hat`, then one pass
    `dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma` (about a tenth of a CPU step
    went to layer norms before).
    """
    return _layer_norm_parts(x, scale, bias, epsilon)[0]


def _layer_norm_fwd(x, scale, bias, epsilon):
    y, normed, inv = _layer_norm_parts(x, scale, bias, epsilon)
    # Empty arrays carry the input dtypes (residuals must be arrays).
    return y, (normed, inv, scale, jnp.zeros((0,), x.dtype), jnp.zeros((0,), bias.dtype))


def _layer_norm_bwd(epsilon, res, dy):
    normed, inv, scale, x_like, bias_like = res
    dy = dy.astype(jnp.float32)
    g = dy * scale.astype(jnp.float32)
    mean_g = jnp.mean(g, axis=-1, keepdims=True)
    mean_gn = jnp.mean(g * normed, axis=-1, keepdims=True)
    dx = (g - mean_g - normed * mean_gn) * inv
    rows = tuple(range(dy.ndim - 1))
    dscale = jnp.sum(dy * normed, axis=rows)
    dbias = jnp.sum(dy, axis=rows)
    return dx.astype(x_like.dtype), dscale.astype(scale.dtype), dbias.astype(bias_like.dtype)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)

_GELU_C = math.sqrt(2.0 / math.pi)


@jax.custom_vjp
def gelu(x: Array) -> Array:
    """tanh-approximate GELU (`nn.gelu`'s default) with a one-pass backward.

    Why: autodiff stores intermediate products of the forward and spends a second pass
    over the (batch*length, mlp) activation on them; here the backward recomputes the tanh
    from the saved input inside the single pass that forms the gradient.
    """
    return _gelu(x)


def _gelu(x):
    return 0.5 * x * (1.0 + jnp.tanh(_GELU_C * (x + 0.044715 * x * x * x)))


def _gelu_fwd(x):
    return _gelu(x), x


def _gelu_bwd(x, dy):
    x32 = x.astype(jnp.float32)
    t = jnp.tanh(_GELU_C * (x32 + 0.044715 * x32 * x32 * x32))
    slope = 0.5 * (1.0 + t) + 0.5 * x32 * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * 0.044715 * x32 * x32)
    return ((dy.astype(jnp.float32) * slope).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


def constrain(x: Array, axes: Sequence[str | None] = ACTIVATION_AXES) -> Array:
    """Pin an activation's logical sharding (no effect without axis rules and a mesh)."""
    return nn.with_logical_constraint(x, tuple(axes))


class Dense(nn.Module):
    """`y = x @ W + b` over the last axis; `axes` names W's (input, output) logical axes."""

    features: int
    axes: tuple[str | None, str | None] = ("embed", "mlp")
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = _param(self, "kernel", self.kernel_init, (x.shape[-1], self.features), self.axes, self.param_dtype)
        y = dense_nd(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            bias = _param(self, "bias", nn.initializers.zeros, (self.features,), self.axes[1:], self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis (named `embed`), computed in float32."""

    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        scale = _param(self, "scale", nn.initializers.ones, (d,), ("embed",), self.param_dtype)
        bias = _param(self, "bias", nn.initializers.zeros, (d,), ("embed",), self.param_dtype)
        return layer_norm(x, scale, bias, self.epsilon).astype(self.dtype)


def attention_bias(mask_bt: Array | None, query_len: int, key_len: int, causal: bool, dtype: Dtype = jnp.float32) -> Array | None:
    """Additive bias (B or 1, 1, Tq, Tk): 0 where attending is allowed, a large negative elsewhere.

    `mask_bt` is a key-padding mask (True/1 = real token). A finite negative keeps rows
    whose keys are all masked (padding queries) free of NaNs.
    """
    allowed = None
    if mask_bt is not None:
        allowed = (mask_bt > 0)[:, None, None, :]
    if causal:
        tri = jnp.tril(jnp.ones((query_len, key_len), dtype=bool), k=key_len - query_len)[None, None]
        allowed = tri if allowed is None else jnp.logical_and(allowed, tri)
    if allowed is None:
        return None
    return jnp.where(allowed, 0.0, -1e9).astype(dtype)


class MultiHeadAttention(nn.Module):
    """Self-attention with a fused qkv projection, optional causal and key-padding masks."""

    num_heads: int
    head_dim: int | None = None
    causal: bool = False
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_btd: Array, mask_bt: Array | None = None, deterministic: bool = True) -> Array:
        d = x_btd.shape[-1]
        h = self.num_heads
        if self.head_dim is None and d % h:
            raise ValueError(f"MultiHeadAttention: model width {d} is not divisible by {h} heads")
        k = self.head_dim or d // h
        w_qkv = _param(self, "qkv_kernel", default_kernel_init, (d, 3, h, k), ("embed", None, "heads", "kv"), self.param_dtype)
        b_qkv = _param(self, "qkv_bias", nn.initializers.zeros, (3, h, k), (None, "heads", "kv"), self.param_dtype)
        x = x_btd.astype(self.dtype)
        qkv = dense_nd(x, w_qkv.astype(self.dtype)) + b_qkv.astype(self.dtype)
        q, key, value = qkv[:, :, 0] * (1.0 / math.sqrt(k)), qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bthk,bshk->bhts", q, key).astype(jnp.float32)
        bias = attention_bias(mask_bt, x.shape[1], x.shape[1], self.causal)
        if bias is not None:
            logits = logits + bias
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        if self.dropout_rate > 0.0 and not deterministic:
            weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
        out = jnp.einsum("bhts,bshk->bthk", weights, value)
        w_o = _param(self, "out_kernel", default_kernel_init, (h, k, d), ("heads", "kv", "embed"), self.param_dtype)
        b_o = _param(self, "out_bias", nn.initializers.zeros, (d,), ("embed",), self.param_dtype)
        y = dense_nd(out, w_o.astype(self.dtype), in_dims=2) + b_o.astype(self.dtype)
        return constrain(y)


class MLP(nn.Module):
    """Position-wise feed-forward block `embed -> mlp -> embed` with GELU."""

    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_btd: Array, deterministic: bool = True) -> Array:
        d = x_btd.shape[-1]
        hidden = Dense(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype, param_dtype=self.param_dtype, name="wi")(x_btd)
        hidden = gelu(hidden)
        hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
        if self.dropout_rate > 0.0 and not deterministic:
            hidden = nn.Dropout(self.dropout_rate)(hidden, deterministic=False)
        return Dense(d, ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype, name="wo")(hidden)


class EncoderLayer(nn.Module):
    """Transformer layer: attention then MLP, each residual; pre-norm by default (stabler)."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    causal: bool = False
    pre_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_btd: Array, mask_bt: Array | None = None, deterministic: bool = True) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        drop = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=deterministic) if self.dropout_rate > 0.0 else y
        attn = MultiHeadAttention(self.num_heads, causal=self.causal, dropout_rate=self.dropout_rate, name="attention", **kw)
        mlp = MLP(self.mlp_dim, dropout_rate=self.dropout_rate, name="mlp", **kw)
        x = x_btd
        if self.pre_norm:
            x = x + drop(attn(LayerNorm(name="norm_attention", **kw)(x), mask_bt, deterministic))
            x = constrain(x)
            x = x + drop(mlp(LayerNorm(name="norm_mlp", **kw)(x), deterministic))
        else:
            x = LayerNorm(name="norm_attention", **kw)(x + drop(attn(x, mask_bt, deterministic)))
            x = constrain(x)
            x = LayerNorm(name="norm_mlp", **kw)(x + drop(mlp(x, deterministic)))
        return constrain(x)


class Encoder(nn.Module):
    """A stack of `EncoderLayer`s (with a final norm when pre-norm)."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    causal: bool = False
    pre_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_btd: Array, mask_bt: Array | None = None, deterministic: bool = True) -> Array:
        x = constrain(x_btd.astype(self.dtype))
        for i in range(self.num_layers):
            x = EncoderLayer(
                self.num_heads, self.mlp_dim, self.dropout_rate, self.causal, self.pre_norm,
                dtype=self.dtype, param_dtype=self.param_dtype, name=f"layer_{i}",
            )(x, mask_bt, deterministic)
        if self.pre_norm:
            x = LayerNorm(name="final_norm", dtype=self.dtype, param_dtype=self.param_dtype)(x)
        return x


def sinusoidal_table(length: int, dim: int, max_period: float = 10000.0) -> Array:
    """(length, dim) sin/cos position table (sin in the first half, cos in the second)."""
    return sinusoidal_embedding(jnp.arange(length, dtype=jnp.float32), dim, max_period)


def sinusoidal_embedding(positions: Array, dim: int, max_period: float = 10000.0) -> Array:
    """Sin/cos embedding of (...,) positions or timesteps into (..., dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))
    angles = positions.astype(jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
    return emb


def count_params(params: Any) -> int:
    """Number of scalars in a (possibly boxed) parameter tree."""
    leaves = jax.tree_util.tree_leaves(nn.meta.unbox(params))
    return int(sum(math.prod(leaf.shape) for leaf in leaves))
