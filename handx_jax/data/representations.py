"""Motion representations and their inverses (DESIGN section 5).

- `joint_pos` (126): joint positions centred on the clip's mean wrist midpoint.
- `joint_pos_w_scalar_rot` (168 = 2 x 21 x 4): per joint the centred position and one
  "rotation scalar", the signed bend angle between the incoming and outgoing bone along
  its chain, measured in the hand-local x-z plane (0 at the wrist and the tips; sign
  flipped for the right hand so mirror-image bends agree). With the local frame below the
  palm faces local +z on the left hand, so flexion (curling towards the palm) is negative
  and extension positive on both hands; `annotate.features.flexion_angles` uses the
  opposite global sign (HandX's flexion-positive convention, DESIGN section 6).

Hand-local frame per frame (DESIGN section 6): x along wrist -> middle MCP,
z = x cross (wrist -> index MCP) normalised, y = z cross x.

The representation drops the clip's centring offset, so `to_joints(to_features(m))` gives
the *centred* joints; `centre_offset(m)` returns the offset when the absolute position is
wanted (`to_joints(f, name, offset=...)`). Works on numpy and on JAX arrays.
"""

from __future__ import annotations

import numpy as np

from handx_jax.hand import skeleton

FEATURE_DIMS = {"joint_pos": 126, "joint_pos_w_scalar_rot": 168}
NAMES = tuple(FEATURE_DIMS)


def _chain_neighbours() -> tuple[np.ndarray, np.ndarray]:
    """Per joint the previous and next joint along its chain (itself at wrist and tips)."""
    prev = np.arange(skeleton.NUM_JOINTS)
    nxt = np.arange(skeleton.NUM_JOINTS)
    for chain in skeleton.CHAINS.values():
        for a, j, b in zip(chain[:-2], chain[1:-1], chain[2:]):
            prev[j], nxt[j] = a, b
    return prev, nxt


PREV_JOINT, NEXT_JOINT = _chain_neighbours()
INTERIOR_MASK = (PREV_JOINT != NEXT_JOINT).astype(np.float32)  # (21,), 15 ones per hand
# +1 for the left hand, -1 for the right: mirror-symmetric bends get the same sign
# (DESIGN section 5); flexion comes out negative on both hands.
HAND_SIGN = np.array([1.0, -1.0], dtype=np.float32)


def _xp(x):
    """numpy or jax.numpy, matching the array type of `x`."""
    if type(x).__module__.startswith(("jax", "jaxlib")):
        import jax.numpy as jnp
        return jnp
    return np


def _check(name: str) -> None:
    if name not in FEATURE_DIMS:
        raise ValueError(f"unknown representation {name!r}; known: {', '.join(NAMES)}")


def centre_offset(motion_btjc, mask_bt=None):
    """Mean wrist midpoint (B, 1, 1, 1, 3) over (valid) frames of each clip."""
    xp = _xp(motion_btjc)
    mid = 0.5 * (motion_btjc[:, :, 0, 0] + motion_btjc[:, :, 1, 0])  # (B, T, 3)
    if mask_bt is None:
        centre = mid.mean(axis=1)
    else:
        weights = xp.asarray(mask_bt, dtype=mid.dtype)[..., None]
        centre = (mid * weights).sum(axis=1) / xp.maximum(weights.sum(axis=1), 1.0)
    return centre[:, None, None, None, :]


def _dot3(a, b):
    """Dot product over a trailing xyz axis, as three products (numpy's tiny-axis sum is slow)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _unit(v, xp):
    return v / xp.sqrt(xp.maximum(_dot3(v, v), 1e-24))[..., None]


def local_frames(motion_btjc):
    """Hand-local rotation matrices (..., 2, 3, 3); rows are the local x, y, z axes."""
    xp = _xp(motion_btjc)
    wrist = motion_btjc[..., 0, :]
    x = _unit(motion_btjc[..., skeleton.JOINT_INDEX["middle_mcp"], :] - wrist, xp)
    z = _unit(xp.cross(x, motion_btjc[..., skeleton.JOINT_INDEX["index_mcp"], :] - wrist), xp)
    y = xp.cross(z, x)
    return xp.stack([x, y, z], axis=-2)


def rotation_scalars(motion_btjc):
    """Signed bend angle per joint (..., 2, 21) in the hand-local x-z plane."""
    xp = _xp(motion_btjc)
    # Coordinate-first layout: every step below works on contiguous (..., 2, 21) planes.
    px, py, pz = xp.moveaxis(motion_btjc, -1, 0)
    if xp is np:
        px, py, pz = (np.ascontiguousarray(c) for c in (px, py, pz))
    mid, index = skeleton.JOINT_INDEX["middle_mcp"], skeleton.JOINT_INDEX["index_mcp"]
    # Local x: wrist -> middle MCP; local z: x cross (wrist -> index MCP); both unit.
    xx, xy, xz = (c[..., mid:mid + 1] - c[..., 0:1] for c in (px, py, pz))
    norm = xp.sqrt(xp.maximum(xx * xx + xy * xy + xz * xz, 1e-24))
    xx, xy, xz = xx / norm, xy / norm, xz / norm
    ix, iy, iz = (c[..., index:index + 1] - c[..., 0:1] for c in (px, py, pz))
    zx, zy, zz = xy * iz - xz * iy, xz * ix - xx * iz, xx * iy - xy * ix
    norm = xp.sqrt(xp.maximum(zx * zx + zy * zy + zz * zz, 1e-24))
    zx, zy, zz = zx / norm, zy / norm, zz / norm
    # Incoming and outgoing bones, in local x and z (the projection onto the x-z plane).
    inc = [c - c[..., PREV_JOINT] for c in (px, py, pz)]
    out = [c[..., NEXT_JOINT] - c for c in (px, py, pz)]
    ax = inc[0] * xx + inc[1] * xy + inc[2] * xz
    az = inc[0] * zx + inc[1] * zy + inc[2] * zz
    bx = out[0] * xx + out[1] * xy + out[2] * xz
    bz = out[0] * zx + out[1] * zy + out[2] * zz
    # Angle from a to b in that plane, signed by the local-y component of a x b.
    angle = xp.arctan2(az * bx - ax * bz, ax * bx + az * bz)
    sign = xp.asarray(HAND_SIGN, dtype=angle.dtype)[:, None]
    return angle * sign * xp.asarray(INTERIOR_MASK, dtype=angle.dtype)


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
        xp = _xp(motion)
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
