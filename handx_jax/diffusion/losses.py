"""Diffusion training losses on x0 predictions, masked by the sequence mask.

loss = w_rep * MSE(x0_hat, x0) + w_vel * MSE of first differences + w_acc * MSE of second
differences (HandX weights 0.5 / 0.2 / 0.1). Each term is a mean over the valid
(frame, feature) entries; a difference is valid only when all frames it spans are.
`geometric_losses` adds optional terms on the predicted joints (fingertip contacts, bone
lengths); the task weights them by config.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from handx_jax.hand import descriptors, geometry

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


# ------------------------------------------------------------------ geometric terms --
# Auxiliary terms on the predicted x0 in joint space (metres in, centimetre errors out, so
# the terms are O(1) like the feature MSE). Contact thresholds come from the descriptors
# table, the tip and palm indices from the geometry layer.

GEOMETRIC_TERMS = ("tip", "palm", "bone")
EMPHASIS_WIDTH_M = 0.01  # beyond its contact threshold a distance's emphasis decays over ~1 cm
RELEVANT_M = 0.10  # distances beyond 10 cm in both clips carry no contact information


def _distance(a, b):
    diff = a - b
    return jnp.sqrt(jnp.maximum(jnp.sum(diff * diff, axis=-1), 1e-12))


def tip_distances(joints):
    """Thumb tip to the other tips of its hand (..., 2, 4) and left tip to right tip (..., 25)."""
    tips = joints[..., geometry.TIPS, :]  # (..., 2, 5, 3)
    intra = _distance(tips[..., 1:, :], tips[..., :1, :])
    inter = _distance(tips[..., 0, :, None, :], tips[..., 1, None, :, :])
    return intra, inter.reshape(inter.shape[:-2] + (25,))


def tip_palm_distances(joints):
    """Closest-palm-point distance of each fingertip to the other hand's palm and to its own
    (..., 2, 5) each; the palm is `geometry.palm_points`' fixed set."""
    tips = joints[..., geometry.TIPS, :]
    weights = jnp.asarray(geometry.PALM_WEIGHTS, joints.dtype)  # (100, 6)
    palms = jnp.einsum("pk,...kc->...pc", weights, joints[..., geometry.PALM_CORNERS, :])  # (..., 2, 100, 3)
    own = jnp.min(_distance(tips[..., :, None, :], palms[..., None, :, :]), axis=-1)
    other = jnp.min(_distance(tips[..., :, None, :], palms[..., ::-1, None, :, :]), axis=-1)
    return other, own


def contact_weight(d_true, threshold: float, emphasis: float):
    """1 + emphasis at distances up to the contact threshold, decaying over ~1 cm above it;
    0 where the distance is far (> 10 cm) in the data (and, via `relevant`, in the prediction)."""
    above = jnp.maximum(d_true - threshold, 0.0) / EMPHASIS_WIDTH_M
    return 1.0 + emphasis * jnp.exp(-0.5 * above * above)


def _weighted_distance_mse(d_hat, d_true, threshold, emphasis, mask_bt):
    relevant = ((d_true < RELEVANT_M) | (d_hat < RELEVANT_M)).astype(d_hat.dtype)
    w = contact_weight(jax.lax.stop_gradient(d_true), threshold, emphasis) * relevant
    m = mask_bt.reshape(mask_bt.shape + (1,) * (d_hat.ndim - 2)).astype(d_hat.dtype)
    err = jnp.square(100.0 * (d_hat - d_true)) * w * m
    return err.sum() / jnp.maximum((m * jnp.ones_like(d_hat)).sum(), 1.0)


def geometric_losses(joints_hat, joints, mask_bt, emphasis: float = 4.0) -> dict:
    """{'loss_tip', 'loss_palm', 'loss_bone'} of predicted joints vs data joints (B, T, 2, 21, 3):
    squared centimetre errors of fingertip-fingertip distances (within and across hands) and
    fingertip-palm distances (other palm and own palm), weighted up near and below the
    contact thresholds, and of the 20 bone lengths per hand; means over valid frames."""
    intra_hat, inter_hat = tip_distances(joints_hat)
    intra, inter = tip_distances(joints)
    tip = (_weighted_distance_mse(intra_hat, intra, descriptors.INTRA_CONTACT_M, emphasis, mask_bt)
           + _weighted_distance_mse(inter_hat, inter, descriptors.TIP_CONTACT, emphasis, mask_bt))
    other_hat, own_hat = tip_palm_distances(joints_hat)
    other, own = tip_palm_distances(joints)
    palm = (_weighted_distance_mse(other_hat, other, descriptors.INTER_CONTACT_M, emphasis, mask_bt)
            + _weighted_distance_mse(own_hat, own, descriptors.INTER_CONTACT_M, emphasis, mask_bt))
    bone_hat, bone = geometry.bone_lengths(joints_hat), geometry.bone_lengths(joints)
    m = mask_bt.astype(bone_hat.dtype)[:, :, None, None]
    bone_err = (jnp.square(100.0 * (bone_hat - bone)) * m).sum() / jnp.maximum(m.sum() * bone.shape[-2] * bone.shape[-1], 1.0)
    return {"loss_tip": tip, "loss_palm": palm, "loss_bone": bone_err}
