"""Parametric forward kinematics of the hand in JAX (jit/vmap-able, batched over leading dims).

Why parametric: the synthetic generator animates joint angles, so bone lengths stay exactly
constant and the true flexion of every joint is known.

Hand frame of the right hand (metres): +x from the wrist to the middle MCP, +y towards the
thumb (radial), +z out of the back of the hand (dorsal). The metacarpals of the four fingers
lie in the palm plane z = 0, so the HandX flexion measure (bones projected on the local x-z
plane, `geometry.flexion_angles`) returns the MCP/PIP/DIP angles below exactly.

Parameters (`HandParams`, all broadcast over leading dims):
- `flexion` (..., 5, 3) radians, fingers in skeleton.FINGERS order (thumb, index, middle,
  ring, pinky). Fingers: MCP, PIP, DIP flexion (positive bends towards the palm, negative
  MCP is hyperextension). Thumb: CMC flexion (sweeps the thumb across the palm), MCP, IP.
- `abduction` (..., 5) radians: fingers rotate sideways at the MCP (positive towards the
  thumb) on top of their rest splay; thumb: CMC abduction (positive away from the palm).
- `wrist_rot` (..., 3) axis-angle or (..., 3, 3) matrix: hand frame -> world.
- `wrist_pos` (..., 3) metres: wrist position in the world.
- `scale` (...,) per-subject bone-length scale (1 = the rest table).
- `left` (...,) bool: the left hand is the mirror image (world x -> -x) of the right hand
  posed with the same parameters, so a symmetric pair shares all its parameters.

A finger's bone directions are R_y(cumulative flexion) applied to its abducted rest
direction: a universal joint at the MCP (flexion, then abduction about the bent bone's
normal) and hinges at the PIP and DIP; the thumb uses the same form in its own frame.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from handx_jax.hand import geometry, skeleton

# ---------------------------------------------------------------- rest-pose table (metres)
# MCP (thumb: CMC) positions relative to the wrist in the right-hand frame.
BASE_OFFSETS = np.array([
    [0.024, 0.021, -0.006],  # thumb CMC
    [0.086, 0.024, 0.000],  # index MCP
    [0.090, 0.000, 0.000],  # middle MCP (defines +x)
    [0.084, -0.020, 0.000],  # ring MCP
    [0.076, -0.038, 0.000],  # pinky MCP
])
# Phalanx lengths (proximal, middle, distal; thumb: metacarpal, proximal, distal).
PHALANX_LENGTHS = np.array([
    [0.044, 0.032, 0.028],  # thumb
    [0.040, 0.023, 0.019],  # index   8.2 cm
    [0.044, 0.026, 0.020],  # middle  9.0 cm
    [0.041, 0.025, 0.019],  # ring    8.5 cm
    [0.033, 0.020, 0.018],  # pinky   7.1 cm
])
# Rest splay of the four fingers in the palm plane (radians, positive towards the thumb).
REST_SPLAY = np.deg2rad(np.array([0.0, 6.0, 0.0, -6.0, -14.0]))


def _thumb_basis() -> np.ndarray:
    """Columns: thumb rest direction, its flexion direction, and the axis of its abduction."""
    x = np.array([1.0, 0.80, -0.45])
    x /= np.linalg.norm(x)
    f = np.array([0.05, -0.55, -1.0])  # across the palm, towards the little finger
    f -= x * (f @ x)
    f /= np.linalg.norm(f)
    k = np.cross(x, f)
    if k[1] < 0:  # positive abduction moves the thumb away from the index finger (palmar)
        k = -k
    return np.stack([x, f, k], axis=1)


THUMB_BASIS = _thumb_basis()  # (3, 3)

# ---------------------------------------------------------------- joint limits (radians)
# Rows thumb..pinky; columns as in `flexion`. Fingers: MCP hyperextension to -30 deg,
# flexion to 95 (MCP) / 100 (PIP) / 70 (DIP, coupled to 2/3 PIP by the generator).
FLEXION_LIMITS = np.deg2rad(np.array([
    # lower                 upper
    [[-15.0, -10.0, -15.0], [80.0, 70.0, 90.0]],  # thumb CMC, MCP, IP
    [[-30.0, 0.0, 0.0], [95.0, 100.0, 70.0]],
    [[-30.0, 0.0, 0.0], [95.0, 100.0, 70.0]],
    [[-30.0, 0.0, 0.0], [95.0, 100.0, 70.0]],
    [[-30.0, 0.0, 0.0], [95.0, 100.0, 70.0]],
])).transpose(1, 0, 2)  # (2, 5, 3): [lower, upper]
# Fingers +-20 deg; the thumb CMC adducts further (to -40 deg) to oppose the ring and pinky.
ABDUCTION_LIMITS = np.deg2rad(np.array([[-40.0] + [-20.0] * 4, [25.0] + [20.0] * 4]))  # (2, 5)


def _xp(*arrays):
    """numpy when every input is numpy (the generator's float64 path), else jax.numpy."""
    if all(isinstance(a, (np.ndarray, np.generic, float, int, bool)) for a in arrays):
        return np
    return jnp


class HandParams(NamedTuple):
    """Pose of one hand (or a batch of hands); see the module docstring for units."""

    flexion: jnp.ndarray  # (..., 5, 3)
    abduction: jnp.ndarray  # (..., 5)
    wrist_rot: jnp.ndarray  # (..., 3) axis-angle or (..., 3, 3)
    wrist_pos: jnp.ndarray  # (..., 3)
    scale: jnp.ndarray | float = 1.0  # (...,)
    left: jnp.ndarray | bool = False  # (...,)


def rotation_matrix(axis_angle: jnp.ndarray) -> jnp.ndarray:
    """Rodrigues: axis-angle (..., 3) -> rotation (..., 3, 3), smooth at zero."""
    jnp = _xp(axis_angle)
    v = jnp.asarray(axis_angle)
    theta2 = jnp.sum(v * v, axis=-1)[..., None, None]
    small = theta2 < 1e-8
    theta = jnp.sqrt(jnp.where(small, 1.0, theta2))
    a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / (theta * theta))
    zero = jnp.zeros_like(v[..., 0])
    k = jnp.stack([
        jnp.stack([zero, -v[..., 2], v[..., 1]], -1),
        jnp.stack([v[..., 2], zero, -v[..., 0]], -1),
        jnp.stack([-v[..., 1], v[..., 0], zero], -1),
    ], -2)
    eye = jnp.eye(3, dtype=k.dtype)
    return eye + a * k + b * (k @ k)


def _directions(cum_flex: jnp.ndarray, abd: jnp.ndarray) -> jnp.ndarray:
    """Unit bone directions (..., 3 bones, 3): R_y(cum_flex) applied to (cos abd, sin abd, 0)."""
    jnp = _xp(cum_flex, abd)
    c = jnp.cos(abd)[..., None]
    s = jnp.sin(abd)[..., None]
    return jnp.stack([c * jnp.cos(cum_flex), jnp.broadcast_to(s, cum_flex.shape),
                      -c * jnp.sin(cum_flex)], axis=-1)


def local_joints(flexion: jnp.ndarray, abduction: jnp.ndarray) -> jnp.ndarray:
    """Right-hand joints (..., 21, 3) in the hand frame at scale 1, wrist at the origin."""
    jnp = _xp(flexion, abduction)
    flexion = jnp.asarray(flexion)
    dtype = flexion.dtype
    cum = jnp.cumsum(flexion, axis=-1)  # (..., 5, 3)
    abd = jnp.asarray(abduction, dtype) + jnp.asarray(REST_SPLAY, dtype)  # (..., 5)
    dirs = _directions(cum, abd)  # (..., 5, 3, 3): finger frame coordinates
    # The thumb's directions live in its own basis (rest direction, flexion direction,
    # abduction axis): rotate them into the hand frame.
    thumb_dirs = _thumb_directions(cum[..., 0, :], abd[..., 0])
    thumb = _rotate(jnp.asarray(THUMB_BASIS, dtype), thumb_dirs)
    dirs = jnp.concatenate([thumb[..., None, :, :], dirs[..., 1:, :, :]], axis=-3)
    segments = dirs * jnp.asarray(PHALANX_LENGTHS, dtype)[..., None]  # (..., 5, 3, 3)
    chain = jnp.asarray(BASE_OFFSETS, dtype)[..., None, :] + jnp.cumsum(segments, axis=-2)
    base = jnp.broadcast_to(jnp.asarray(BASE_OFFSETS, dtype), chain.shape[:-2] + (3,))
    pts = jnp.concatenate([base[..., None, :], chain], axis=-2)  # (..., 5 fingers, 4, 3)
    wrist = jnp.zeros(pts.shape[:-3] + (1, 3), dtype)
    gathered = pts.reshape(pts.shape[:-3] + (20, 3))
    return jnp.concatenate([wrist, gathered], axis=-2)[..., _ORDER, :]


def _rotate(rot, pts):
    """rot (..., 3, 3) applied to points (..., 3) by broadcasting (cheaper than einsum)."""
    return (pts[..., 0:1] * rot[..., :, 0] + pts[..., 1:2] * rot[..., :, 1]
            + pts[..., 2:3] * rot[..., :, 2])


def _thumb_directions(cum: jnp.ndarray, abd: jnp.ndarray) -> jnp.ndarray:
    """Thumb bone directions (..., 3, 3) in its basis: (cos a cos p, cos a sin p, sin a)."""
    jnp = _xp(cum, abd)
    c = jnp.cos(abd)[..., None]
    s = jnp.sin(abd)[..., None]
    return jnp.stack([c * jnp.cos(cum), c * jnp.sin(cum), jnp.broadcast_to(s, cum.shape)], -1)


def _joint_order() -> np.ndarray:
    """Index into [wrist, (finger base, 3 chain joints) x 5 fingers] giving skeleton order."""
    order = np.zeros(skeleton.NUM_JOINTS, dtype=np.int32)
    for f, finger in enumerate(skeleton.FINGERS):
        for k, joint in enumerate(skeleton.CHAINS[finger][1:]):
            order[joint] = 1 + 4 * f + k
    return order


_ORDER = _joint_order()
_MIRROR = np.array([-1.0, 1.0, 1.0])


def forward_kinematics(params: HandParams | dict) -> jnp.ndarray:
    """World joints (..., 21, 3) of hands posed by `params` (HandParams or a dict of its fields)."""
    if isinstance(params, dict):
        params = HandParams(**params)
    jnp = _xp(*params)
    flexion = jnp.asarray(params.flexion)
    dtype = flexion.dtype if jnp.issubdtype(flexion.dtype, jnp.floating) else jnp.float32
    flexion = flexion.astype(dtype)
    local = local_joints(flexion, jnp.asarray(params.abduction, dtype))
    scale = jnp.asarray(params.scale, dtype)[..., None, None]
    rot = jnp.asarray(params.wrist_rot, dtype)
    if rot.shape[-2:] != (3, 3):
        rot = rotation_matrix(rot)
    world = _rotate(rot[..., None, :, :], local * scale)
    world = world + jnp.asarray(params.wrist_pos, dtype)[..., None, :]
    left = jnp.asarray(params.left, bool)[..., None, None]
    return jnp.where(left, world * jnp.asarray(_MIRROR, dtype), world)


bone_lengths = geometry.bone_lengths  # one definition: the geometry layer's


def rest_bone_lengths(scale: float = 1.0) -> np.ndarray:
    """Bone lengths (20,) of the rest table at a subject scale, in skeleton.BONES order."""
    joints = local_joints(np.zeros((5, 3)), np.zeros(5))
    parents = np.array([p for p, _ in skeleton.BONES])
    children = np.array([c for _, c in skeleton.BONES])
    return scale * np.linalg.norm(joints[children] - joints[parents], axis=-1)


def clip_to_limits(flexion, abduction):
    """Clamp angles into the joint limits (works on numpy or JAX arrays)."""
    xp = _xp(flexion, abduction)
    return (xp.clip(flexion, FLEXION_LIMITS[0], FLEXION_LIMITS[1]),
            xp.clip(abduction, ABDUCTION_LIMITS[0], ABDUCTION_LIMITS[1]))
