"""FSQ motion tokenizer: a 1-D convolutional autoencoder with finite scalar quantisation.

Encoder: an input convolution (k3) to `width` channels, then per downsampling level a
stride-2 convolution (k4) and a stack of dilated residual blocks; a final convolution to
one channel per FSQ dimension. Decoder: the mirror image with nearest-neighbour x2
upsampling. Each latent channel is squashed by tanh into `levels[i]` integer values and
rounded with a straight-through gradient; a token id is the mixed-radix number of the
rounded values, so the codebook holds exactly prod(levels) entries (not the nominal size).

An optional Haar wavelet patcher folds `patch_size` frames into channels before the
encoder and unfolds them after the decoder (an exact orthonormal inverse), so the total
temporal downsampling is `patch_size * 2**down_levels`.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.models.transformer import _param

# Level sets by nominal codebook size (HandX / MotionMillion). The real size is the product.
LEVELS = {
    512: (8, 8, 8),
    1024: (8, 5, 5, 5),
    2048: (8, 8, 6, 5),
    4096: (7, 5, 5, 5, 5),
    65536: (8, 8, 8, 5, 5, 5),
}
BOUND_EPS = 1e-3
ACTIVATION_AXES = ("batch", "length", "embed")


def codebook_size(levels: Sequence[int]) -> int:
    """The actual number of codes: the product of the levels."""
    return int(math.prod(int(v) for v in levels))


def levels_for(nominal: int) -> tuple[int, ...]:
    if int(nominal) not in LEVELS:
        raise ValueError(f"FSQ codebook {nominal}: choose one of {', '.join(map(str, LEVELS))}")
    return LEVELS[int(nominal)]


# ------------------------------------------------------------------------------- FSQ --


def _level_constants(levels: Sequence[int]):
    lv = np.asarray(levels, np.float64)
    half_l = (lv - 1.0) * (1.0 - BOUND_EPS) / 2.0
    offset = np.where(lv % 2 == 1, 0.0, 0.5)
    shift = np.arctanh(offset / half_l)
    half_width = np.floor(lv / 2.0)
    basis = np.cumprod([1] + [int(v) for v in levels[:-1]]).astype(np.int64)
    return half_l, offset, shift, half_width, basis


def bound(z, levels: Sequence[int]):
    """Squash each channel so that rounding yields exactly `levels[i]` integers."""
    half_l, offset, shift, _, _ = _level_constants(levels)
    return jnp.tanh(z + shift.astype(np.float32)) * half_l.astype(np.float32) - offset.astype(np.float32)


def quantize(z, levels: Sequence[int]):
    """(normalised codes in [-1, 1], integer codes) of latents z (..., D); straight-through round."""
    bounded = bound(z, levels)
    rounded = jnp.round(bounded)
    ste = bounded + jax.lax.stop_gradient(rounded - bounded)
    _, _, _, half_width, _ = _level_constants(levels)
    return ste / half_width.astype(np.float32), rounded


def codes_to_indices(rounded, levels: Sequence[int]):
    """Integer codes (..., D) in [-L//2, ...] -> flat token ids (...,) int32 in [0, prod(levels))."""
    _, _, _, half_width, basis = _level_constants(levels)
    digits = jnp.round(rounded).astype(jnp.int32) + half_width.astype(np.int32)
    return jnp.sum(digits * basis.astype(np.int32), axis=-1).astype(jnp.int32)


def indices_to_normalized(indices, levels: Sequence[int]):
    """Flat token ids (...,) -> normalised codes (..., D) (the decoder's input)."""
    _, _, _, half_width, basis = _level_constants(levels)
    idx = jnp.asarray(indices, jnp.int32)[..., None]
    digits = (idx // basis.astype(np.int32)) % np.asarray(levels, np.int32)
    return (digits.astype(jnp.float32) - half_width.astype(np.float32)) / half_width.astype(np.float32)


# ------------------------------------------------------------------- Haar patcher --


def haar_patch(x_btf, patch_size: int):
    """(B, T, F) -> (B, T / p, F * p): `log2(p)` orthonormal Haar steps over time."""
    _check_patch(patch_size)
    for _ in range(int(round(math.log2(patch_size)))):
        b, t, f = x_btf.shape
        if t % 2:
            raise ValueError(f"Haar patcher: {t} frames do not split into pairs")
        pairs = x_btf.reshape(b, t // 2, 2, f)
        low = (pairs[:, :, 0] + pairs[:, :, 1]) / math.sqrt(2.0)
        high = (pairs[:, :, 0] - pairs[:, :, 1]) / math.sqrt(2.0)
        x_btf = jnp.concatenate([low, high], axis=-1)
    return x_btf


def haar_unpatch(x_btf, patch_size: int):
    """Exact inverse of `haar_patch`."""
    _check_patch(patch_size)
    for _ in range(int(round(math.log2(patch_size)))):
        b, t, f = x_btf.shape
        low, high = x_btf[..., : f // 2], x_btf[..., f // 2:]
        first = (low + high) / math.sqrt(2.0)
        second = (low - high) / math.sqrt(2.0)
        x_btf = jnp.stack([first, second], axis=2).reshape(b, t * 2, f // 2)
    return x_btf


def _check_patch(patch_size: int) -> None:
    if patch_size < 1 or patch_size & (patch_size - 1):
        raise ValueError(f"Haar patch_size must be a power of two, got {patch_size}")


# ---------------------------------------------------------------------- modules --

conv_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # PyTorch's Conv1d default


class Conv1D(nn.Module):
    """1-D convolution over (B, T, C) with boxed kernel (k, C_in, C_out) and bias."""

    features: int
    kernel: int
    axes: tuple = (None, None, "embed")
    stride: int = 1
    dilation: int = 1
    padding: int | None = None  # default: 'same' for stride 1

    @nn.compact
    def __call__(self, x):
        w = _param(self, "kernel", conv_init, (self.kernel, x.shape[-1], self.features), self.axes, jnp.float32)
        bias = _param(self, "bias", nn.initializers.zeros, (self.features,), (self.axes[-1],), jnp.float32)
        pad = self.dilation * (self.kernel - 1) // 2 if self.padding is None else self.padding
        y = jax.lax.conv_general_dilated(x, w, (self.stride,), [(pad, pad)], rhs_dilation=(self.dilation,),
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3_dilated(relu(x))))."""

    width: int
    dilation: int

    @nn.compact
    def __call__(self, x):
        h = Conv1D(self.width, 3, (None, "embed", "mlp"), dilation=self.dilation, name="conv_dilated")(nn.relu(x))
        h = Conv1D(self.width, 1, (None, "mlp", "embed"), name="conv_out")(nn.relu(h))
        return nn.with_logical_constraint(x + h, ACTIVATION_AXES)


def _dilations(depth: int, growth: int) -> list[int]:
    return [growth ** i for i in range(depth)][::-1]


class Encoder(nn.Module):
    width: int
    depth: int
    dilation_growth: int
    down_levels: int
    code_dim: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(Conv1D(self.width, 3, (None, None, "embed"), name="conv_in")(x))
        for level in range(self.down_levels):
            h = Conv1D(self.width, 4, (None, None, "embed"), stride=2, padding=1, name=f"down_{level}")(h)
            for i, d in enumerate(_dilations(self.depth, self.dilation_growth)):
                h = ResBlock(self.width, d, name=f"res_{level}_{i}")(h)
        return Conv1D(self.code_dim, 3, (None, "embed", None), name="conv_code")(h)


class Decoder(nn.Module):
    width: int
    depth: int
    dilation_growth: int
    down_levels: int
    out_dim: int

    @nn.compact
    def __call__(self, z):
        h = nn.relu(Conv1D(self.width, 3, (None, None, "embed"), name="conv_in")(z))
        for level in range(self.down_levels):
            for i, d in enumerate(_dilations(self.depth, self.dilation_growth)):
                h = ResBlock(self.width, d, name=f"res_{level}_{i}")(h)
            h = jnp.repeat(h, 2, axis=1)  # nearest-neighbour x2
            h = Conv1D(self.width, 3, (None, None, "embed"), name=f"up_{level}")(h)
        h = nn.relu(Conv1D(self.width, 3, (None, None, "embed"), name="conv_mid")(h))
        return Conv1D(self.out_dim, 3, (None, "embed", None), name="conv_out")(h)


class FSQTokenizer(nn.Module):
    """Features (B, T, F) -> (reconstruction (B, T, F), token ids (B, T / downsample))."""

    feature_dim: int
    width: int
    depth: int
    dilation_growth: int
    down_levels: int
    levels: tuple
    patch_size: int = 1

    @property
    def downsample(self) -> int:
        return self.patch_size * 2 ** self.down_levels

    def setup(self):
        channels = self.feature_dim * self.patch_size
        self.encoder = Encoder(self.width, self.depth, self.dilation_growth, self.down_levels, len(self.levels))
        self.decoder = Decoder(self.width, self.depth, self.dilation_growth, self.down_levels, channels)

    def __call__(self, x_btf):
        z_hat, rounded = self.encode_latents(x_btf)
        return self.decode_latents(z_hat), codes_to_indices(rounded, self.levels)

    def encode_latents(self, x_btf):
        if x_btf.shape[1] % self.downsample:
            raise ValueError(f"FSQ tokenizer: {x_btf.shape[1]} frames is not a multiple of the "
                             f"downsampling factor {self.downsample}")
        x = haar_patch(x_btf, self.patch_size) if self.patch_size > 1 else x_btf
        x = nn.with_logical_constraint(x, ("batch", "length", "feature"))
        return quantize(self.encoder(x), self.levels)

    def decode_latents(self, z_hat):
        y = self.decoder(z_hat)
        return haar_unpatch(y, self.patch_size) if self.patch_size > 1 else y

    def encode(self, x_btf):
        """Token ids (B, T / downsample) int32."""
        _, rounded = self.encode_latents(x_btf)
        return codes_to_indices(rounded, self.levels)

    def decode(self, indices_bl):
        """Reconstructed normalised features (B, L * downsample, F) from token ids."""
        return self.decode_latents(indices_to_normalized(indices_bl, self.levels))


def model_from_config(config) -> FSQTokenizer:
    from handx_jax.data import representations

    m = config.model
    return FSQTokenizer(feature_dim=representations.FEATURE_DIMS[str(config.data.representation)],
                        width=int(m.width), depth=int(m.depth), dilation_growth=int(m.dilation_growth),
                        down_levels=int(m.down_levels), levels=tuple(int(v) for v in m.levels),
                        patch_size=int(m.patch_size))


def forward_flops(config, frames: int | None = None) -> float:
    """Analytic multiply-add FLOPs (x2) of one clip's encoder + decoder forward pass (convolutions)."""
    from handx_jax.data import representations

    m = config.model
    t = int(frames or config.data.seq_len) // int(m.patch_size)
    f, w, code = representations.FEATURE_DIMS[str(config.data.representation)] * int(m.patch_size), int(m.width), len(m.levels)
    depth, levels = int(m.depth), int(m.down_levels)

    def conv(t_out, k, c_in, c_out):
        return 2.0 * t_out * k * c_in * c_out

    def res(t_):
        return depth * (conv(t_, 3, w, w) + conv(t_, 1, w, w))

    total = conv(t, 3, f, w)
    tt = t
    for _ in range(levels):
        tt //= 2
        total += conv(tt, 4, w, w) + res(tt)
    total += conv(tt, 3, w, code)
    total += conv(tt, 3, code, w)
    for _ in range(levels):
        total += res(tt)
        tt *= 2
        total += conv(tt, 3, w, w)
    total += conv(tt, 3, w, w) + conv(tt, 3, w, f)
    return total
