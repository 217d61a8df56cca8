"""Diffusion training losses on x0 predictions, masked by the sequence mask.

loss = w_rep * MSE(x0_hat, x0) + w_vel * MSE of first differences + w_acc * MSE of second
differences (HandX weights 0.5 / 0.2 / 0.1). Each term is a mean over the valid
(frame, feature) entries; a difference is valid only when all frames it spans are.
"""

from __future__ import annotations

import jax.numpy as jnp

DEFAULT_WEIGHTS = {"rep": 0.5, "vel": 0.2, "acc": 0.1}


def masked_mse(pred_btf: jnp.ndarray, target_btf: jnp.ndarray, mask_bt: jnp.ndarray) -> jnp.ndarray:
    """Mean squared error over entries whose frame mask is 1."""
    mask = mask_bt.astype(pred_btf.dtype)[..., None]
    sq = jnp.square(pred_btf - target_btf) * mask
    denom = jnp.maximum(mask.sum() * pred_btf.shape[-1], 1.0)
    return sq.sum() / denom


def diffusion_losses(x0_hat_btf, x0_btf, mask_bt, weights: dict | None = None) -> tuple[jnp.ndarray, dict]:
    """(total, {'loss_rep', 'loss_vel', 'loss_acc'}) for x0 predictions."""
    w = dict(DEFAULT_WEIGHTS, **(weights or {}))
    mask = mask_bt.astype(jnp.float32)
    rep = masked_mse(x0_hat_btf, x0_btf, mask)
    vel_mask = mask[:, 1:] * mask[:, :-1]
    vel = masked_mse(jnp.diff(x0_hat_btf, axis=1), jnp.diff(x0_btf, axis=1), vel_mask)
    acc_mask = vel_mask[:, 1:] * vel_mask[:, :-1]
    acc = masked_mse(jnp.diff(x0_hat_btf, n=2, axis=1), jnp.diff(x0_btf, n=2, axis=1), acc_mask)
    total = w["rep"] * rep + w["vel"] * vel + w["acc"] * acc
    return total, {"loss_rep": rep, "loss_vel": vel, "loss_acc": acc}
