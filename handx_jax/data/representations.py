"""Motion representations and their inverses.

- `joint_pos` (126): joint positions centred on the clip's mean wrist midpoint.
- `joint_pos_w_scalar_rot` (168 = 2 x 21 x 4): per joint the centred position and one
  "rotation scalar", the signed bend angle between the incoming and outgoing bone along
  its chain in the hand-local x-z plane (0 at the wrist and the tips): the geometry
  layer's `bend_angles`, whose sign is the annotation's (positive = bent towards the palm
  on both hands, so mirror-image bends agree).

The representation drops the clip's centring offset, so `to_joints(to_features(m))` gives
the *centred* joints; `centre_offset(m)` returns the offset when the absolute position is
wanted (`to_joints(f, name, offset=...)`). Works on numpy and on JAX arrays.
"""

from __future__ import annotations

import numpy as np

from handx_jax.hand import geometry

FEATURE_DIMS = {"joint_pos": 126, "joint_pos_w_scalar_rot": 168}
NAMES = tuple(FEATURE_DIMS)


def _check(name: str) -> None:
    if name not in FEATURE_DIMS:
        raise ValueError(f"unknown representation {name!r}; known: {', '.join(NAMES)}")


def centre_offset(motion_btjc, mask_bt=None):
    """Mean wrist midpoint (B, 1, 1, 1, 3) over (valid) frames of each clip."""
    xp = geometry.array_module(motion_btjc)
    mid = 0.5 * (motion_btjc[:, :, 0, 0] + motion_btjc[:, :, 1, 0])  # (B, T, 3)
    if mask_bt is None:
        centre = mid.mean(axis=1)
    else:
        weights = xp.asarray(mask_bt, dtype=mid.dtype)[..., None]
        centre = (mid * weights).sum(axis=1) / xp.maximum(weights.sum(axis=1), 1.0)
    return centre[:, None, None, None, :]


def rotation_scalars(motion_btjc):
    """Signed bend angle per joint (..., 2, 21) in the hand-local x-z plane."""
    return geometry.bend_angles(motion_btjc)


def _batched(motion):
    if motion.ndim == 4:
        return motion[None], True
    if motion.ndim != 5 or tuple(motion.shape[-3:]) != (2, 21, 3):
        raise ValueError(f"motion shape {tuple(motion.shape)}, expected (B, T, 2, 21, 3)")
    return motion, False


def to_features(motion_btjc, name: str, mask_bt=None):
    """Features (B, T, F) of motion (B, T, 2, 21, 3); (T, 2, 21, 3) gives (T, F).

    `mask_bt` (B, T) restricts the centring mean to valid frames of padded clips.
    """
    _check(name)
    motion, single = _batched(motion_btjc)
    centred = motion - centre_offset(motion, mask_bt)
    b, t = centred.shape[:2]
    if name == "joint_pos":
        out = centred.reshape(b, t, 126)
    else:
        xp = geometry.array_module(motion)
        angles = rotation_scalars(centred).astype(centred.dtype)
        out = xp.concatenate([centred, angles[..., None]], axis=-1).reshape(b, t, 168)
    return out[0] if single else out


def to_joints(features, name: str, offset=None):
    """Centred joints (B, T, 2, 21, 3) from features (B, T, F); `offset` adds the centre."""
    _check(name)
    dim = FEATURE_DIMS[name]
    if features.shape[-1] != dim:
        raise ValueError(f"{name} has {dim} features, got shape {tuple(features.shape)}")
    lead = features.shape[:-1]
    if name == "joint_pos":
        joints = features.reshape(*lead, 2, 21, 3)
    else:
        joints = features.reshape(*lead, 2, 21, 4)[..., :3]
    if offset is not None:
        joints = joints + offset
    return joints
