"""Kinematic projection: turn any joint-position motion into a valid hand motion.

Given motion (N, T, 2, 21, 3), fit per clip and hand one length per bone (20, shared by
every frame of the clip) and per frame a wrist pose plus the 20 joint angles of
`kinematics` (flexion (5, 3), abduction (5,)), then return the forward kinematics of the
fit. By construction the result has

- constant bone lengths over each clip (the bones are unit directions times the clip's
  lengths, rotated rigidly), so bone-length deviation is zero up to float32 rounding;
- every joint angle inside `kinematics.FLEXION_LIMITS` / `ABDUCTION_LIMITS` (the angles are
  projected into that box after every solver step and at the end).

Per-bone lengths (rather than one scale per hand) let a clip keep its own proportions, so
data from other skeletons (real captures) projects with little position change; the
palm's bone directions stay those of the rest table.

Fit, inside one `jax.jit`: the left hand is mirrored (x -> -x) so both hands are right
hands; lengths start at the clip's mean bone lengths, the wrist rotation at the
least-squares (Kabsch) fit of the rest palm to the frame's palm joints, the angles at
their closed-form reading from the bone directions in that frame; then `rounds` times:
`iters` damped Gauss-Newton (Levenberg-Marquardt) steps per frame over the 26 pose unknowns,
followed by the exact least-squares lengths for those poses (joints are linear in them).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.hand import geometry, kinematics, skeleton

NUM_BONES = len(skeleton.BONES)
REST_LENGTHS = kinematics.rest_bone_lengths()  # (20,) metres, skeleton.BONES order
_LOWER = np.concatenate([kinematics.FLEXION_LIMITS[0].reshape(-1), kinematics.ABDUCTION_LIMITS[0]])
_UPPER = np.concatenate([kinematics.FLEXION_LIMITS[1].reshape(-1), kinematics.ABDUCTION_LIMITS[1]])
# Bone index per (finger, chain step) and the chain's joints: joints = cumsum of bones.
_CHAIN_BONES = np.array([[int(skeleton.CHAINS[f][k + 1]) - 1 for k in range(4)] for f in skeleton.FINGERS])
_CHAIN_JOINTS = np.array([skeleton.CHAINS[f][1:] for f in skeleton.FINGERS])  # (5, 4)
# ANCESTOR[j, b] = 1 when bone b lies on the path from the wrist to joint j.
ANCESTOR = np.zeros((skeleton.NUM_JOINTS, NUM_BONES), np.float32)
for _f in range(5):
    for _k in range(4):
        ANCESTOR[_CHAIN_JOINTS[_f, _k], _CHAIN_BONES[_f, :_k + 1]] = 1.0
_PALM = np.array([0] + [skeleton.CHAINS[f][1] for f in skeleton.FINGERS])  # wrist, CMC, 4 MCPs
MIRROR = np.array([-1.0, 1.0, 1.0], np.float32)
HAND_MIRROR = np.stack([MIRROR, np.ones(3, np.float32)])  # (2, 3) per hand: world <-> its right-hand frame
LENGTH_RANGE = (0.25, 4.0)
THUMB_MCP_SAFE = float(np.deg2rad(44.0))  # see `safe_thumb`
_THUMB_META = skeleton.CHAINS["thumb"][2] - 1  # bone CMC -> MCP
_THUMB_PROX = skeleton.CHAINS["thumb"][3] - 1  # bone MCP -> IP  # fitted lengths stay within these multiples of the rest table


class Projection(NamedTuple):
    """Result of `project` (numpy arrays; hands on axis 2 for per-frame fields)."""

    motion: np.ndarray  # (N, T, 2, 21, 3) projected joints
    lengths: np.ndarray  # (N, 2, 20) metres, skeleton.BONES order
    flexion: np.ndarray  # (N, T, 2, 5, 3) radians, within kinematics.FLEXION_LIMITS
    abduction: np.ndarray  # (N, T, 2, 5) radians, within kinematics.ABDUCTION_LIMITS
    error: np.ndarray  # (N,) mean per-joint distance (metres) between input and projection
    # Wrist pose of the fit in each hand's own frame: the left hand's belongs to its mirror
    # image (x -> -x), a right hand, as `right_hand_fk` poses it.
    wrist_rot: np.ndarray | None = None  # (N, T, 2, 3, 3)
    wrist_pos: np.ndarray | None = None  # (N, T, 2, 3)


def bone_vectors(flexion, abduction):
    """Unit bone directions (..., 20, 3) in the right-hand frame for angles (..., 5, 3), (..., 5)."""
    local = kinematics.local_joints(flexion, abduction)
    vec = local[..., geometry.BONE_CHILDREN, :] - local[..., geometry.BONE_PARENTS, :]
    return vec / jnp.asarray(REST_LENGTHS, vec.dtype)[:, None]


def chain_joints(bones):
    """Joints (..., 21, 3) relative to the wrist from bone vectors (..., 20, 3)."""
    per_finger = jnp.cumsum(bones[..., _CHAIN_BONES, :], axis=-2)  # (..., 5, 4, 3)
    flat = per_finger.reshape(per_finger.shape[:-3] + (20, 3))
    wrist = jnp.zeros(flat.shape[:-2] + (1, 3), flat.dtype)
    order = np.argsort(_CHAIN_JOINTS.reshape(-1))  # chain slot of joints 1..20
    return jnp.concatenate([wrist, flat[..., order, :]], axis=-2)


def right_hand_fk(angles, rot, pos, lengths):
    """Right-hand joints (..., 21, 3): angles (..., 20) [flexion 15, abduction 5], rotation
    (..., 3, 3), wrist (..., 3), bone lengths (..., 20)."""
    flex = angles[..., :15].reshape(angles.shape[:-1] + (5, 3))
    dirs = bone_vectors(flex, angles[..., 15:])
    local = chain_joints(dirs * lengths[..., None])
    return jnp.einsum("...ij,...kj->...ki", rot, local) + pos[..., None, :]


def _kabsch(src, dst):
    """Rotation R (..., 3, 3) minimising |R src_k - dst_k|^2 over points (..., K, 3)."""
    cov = jnp.einsum("...ki,...kj->...ij", dst, src)
    u, _, vt = jnp.linalg.svd(cov)
    det = jnp.linalg.det(u @ vt)
    fix = jnp.concatenate([jnp.ones(det.shape + (2,), det.dtype), jnp.sign(det)[..., None]], -1)
    return (u * fix[..., None, :]) @ vt


def _initial_angles(rel):
    """Closed-form angles (..., 20) from wrist-relative joints (..., 21, 3) in the hand frame."""
    bones = rel[..., geometry.BONE_CHILDREN, :] - rel[..., geometry.BONE_PARENTS, :]
    dirs = bones / jnp.sqrt(jnp.maximum(jnp.sum(bones * bones, -1, keepdims=True), 1e-12))
    chain = dirs[..., _CHAIN_BONES[:, 1:], :]  # (..., 5, 3, 3): the three movable bones per finger
    basis = jnp.asarray(kinematics.THUMB_BASIS, rel.dtype)
    thumb = jnp.einsum("ji,...kj->...ki", basis, chain[..., 0, :, :])  # coordinates in the thumb basis
    t_cum = jnp.arctan2(thumb[..., 1], thumb[..., 0])
    t_abd = jnp.arcsin(jnp.clip(thumb[..., 0, 2], -1.0, 1.0))
    fingers = chain[..., 1:, :, :]
    f_cum = jnp.arctan2(-fingers[..., 2], fingers[..., 0])  # (..., 4, 3)
    f_abd = jnp.arcsin(jnp.clip(fingers[..., 0, 1], -1.0, 1.0)) - jnp.asarray(kinematics.REST_SPLAY[1:], rel.dtype)
    cum = jnp.concatenate([t_cum[..., None, :], f_cum], axis=-2)
    flex = jnp.diff(cum, axis=-1, prepend=jnp.zeros_like(cum[..., :1]))
    flex = jnp.arctan2(jnp.sin(flex), jnp.cos(flex))  # wrap into (-pi, pi]
    abd = jnp.concatenate([t_abd[..., None], f_abd], axis=-1)
    return jnp.concatenate([flex.reshape(flex.shape[:-2] + (15,)), abd], axis=-1)


def clip_angles(angles):
    """Angles (..., 20) [flexion 15, abduction 5] clipped into the joint-limit box."""
    return jnp.clip(angles, jnp.asarray(_LOWER, angles.dtype), jnp.asarray(_UPPER, angles.dtype))


def safe_thumb(angles):
    """Box-clipped angles whose thumb MCP also reads inside the joint-limit metric.

    HandX measures the thumb MCP as the 3-D angle between the metacarpal and the proximal
    phalanx, signed by the hand-local z of their cross product; for some CMC poses that
    sign is negative, and a bend beyond `THUMB_MCP_SAFE` would read as hyperextension past
    the metric's -45 degrees. Unless the sign is clearly positive, the MCP bend is capped at
    `THUMB_MCP_SAFE` (the 3-D angle never exceeds the bend, so the reading stays inside).
    """
    angles = clip_angles(angles)
    flex = angles[..., :15].reshape(angles.shape[:-1] + (5, 3))
    dirs = bone_vectors(flex, angles[..., 15:])
    a, b = dirs[..., _THUMB_META, :], dirs[..., _THUMB_PROX, :]
    cross = jnp.cross(a, b)
    cos_z = cross[..., 2] / jnp.sqrt(jnp.maximum(jnp.sum(cross * cross, -1), 1e-24))
    capped = jnp.minimum(angles[..., 1], THUMB_MCP_SAFE)
    return angles.at[..., 1].set(jnp.where(cos_z < -0.05, angles[..., 1], capped))


def _rodrigues(w):
    return kinematics.rotation_matrix(w)


# Jacobian bookkeeping: FLEX_MASK[j, 3 f + i] = 1 when flexion i of finger f moves joint j
# (joint j lies past chain slot i); PIVOT[3 f + i] = the joint it turns about.
FLEX_MASK = np.zeros((skeleton.NUM_JOINTS, 15), np.float32)
for _f in range(5):
    for _m in range(1, 4):
        FLEX_MASK[_CHAIN_JOINTS[_f, _m], 3 * _f:3 * _f + _m] = 1.0
PIVOT = _CHAIN_JOINTS[:, :3].reshape(-1)
FINGER_OF_ANGLE = np.repeat(np.arange(5), 3)
# Flexion turns every finger about the hand's y axis, the thumb about its basis' third axis.
FLEX_AXES = np.stack([kinematics.THUMB_BASIS[:, 2]] + [np.array([0.0, 1.0, 0.0])] * 4)
ABD_MASK = np.zeros((skeleton.NUM_JOINTS, 5), np.float32)  # abduction f moves joints past the MCP
_JOINT_FINGER = np.zeros(skeleton.NUM_JOINTS, np.int32)  # finger and movable-bone slot of joints
_JOINT_SLOT = np.zeros(skeleton.NUM_JOINTS, np.int32)
for _f in range(5):
    ABD_MASK[_CHAIN_JOINTS[_f, 1:], _f] = 1.0
    _JOINT_FINGER[_CHAIN_JOINTS[_f, 1:]] = _f
    _JOINT_SLOT[_CHAIN_JOINTS[_f, 1:]] = np.arange(3)


def _direction_abduction_derivative(angles):
    """d(bone direction)/d(abduction) (..., 5, 3 bones, 3) in the hand frame."""
    flex = angles[..., :15].reshape(angles.shape[:-1] + (5, 3))
    cum = jnp.cumsum(flex, axis=-1)
    a = angles[..., 15:] + jnp.asarray(kinematics.REST_SPLAY, angles.dtype)
    c, s = jnp.cos(a)[..., None], jnp.sin(a)[..., None]
    fingers = jnp.stack([-s * jnp.cos(cum), jnp.broadcast_to(c, cum.shape), s * jnp.sin(cum)], -1)
    thumb_local = jnp.stack([-s * jnp.cos(cum), -s * jnp.sin(cum), jnp.broadcast_to(c, cum.shape)], -1)
    basis = jnp.asarray(kinematics.THUMB_BASIS, angles.dtype)
    thumb = jnp.einsum("ij,...kj->...ki", basis, thumb_local[..., 0, :, :])
    return jnp.concatenate([thumb[..., None, :, :], fingers[..., 1:, :, :]], axis=-3)


def pose_jacobian(angles, rot, lengths):
    """Joints (21, 3) of one right hand at wrist 0 and their Jacobian (21, 3, 26) with respect to
    [rotation increment (right-multiplied axis-angle), wrist position, flexion 15, abduction 5]."""
    flex = angles[:15].reshape(5, 3)
    local = chain_joints(bone_vectors(flex, angles[15:]) * lengths[:, None])  # (21, 3)
    axes = jnp.asarray(FLEX_AXES, angles.dtype)[FINGER_OF_ANGLE]  # (15, 3)
    arm = local[:, None, :] - local[PIVOT][None, :, :]  # (21, 15, 3)
    d_flex = jnp.cross(jnp.broadcast_to(axes, arm.shape), arm) * jnp.asarray(FLEX_MASK, angles.dtype)[..., None]
    dd_abd = _direction_abduction_derivative(angles) * lengths[_CHAIN_BONES[:, 1:]][..., None]  # (5, 3, 3)
    cum_abd = jnp.cumsum(dd_abd, axis=-2)  # (5, 3, 3): slot m = 1..3
    per_joint = jnp.asarray(ABD_MASK, angles.dtype)[..., None] * cum_abd[_JOINT_FINGER, _JOINT_SLOT][:, None, :]
    d_rot = jnp.cross(jnp.eye(3, dtype=angles.dtype)[None, :, :], local[:, None, :])  # (21, 3 k, 3)
    local_jac = jnp.concatenate([d_rot, d_flex, per_joint], axis=1)  # (21, 23, 3)
    world = _rotate(rot, local_jac)  # (21, 23, 3)
    eye = jnp.broadcast_to(jnp.eye(3, dtype=angles.dtype), (skeleton.NUM_JOINTS, 3, 3))
    jac = jnp.concatenate([world[:, :3], eye, world[:, 3:]], axis=1)  # (21, 26, 3)
    return _rotate(rot, local), jnp.swapaxes(jac, 1, 2)


def _rotate(rot, pts):
    """rot (3, 3) applied to points (..., 3), written as broadcasts (tiny matmuls are slow on CPU)."""
    return pts[..., 0:1] * rot[:, 0] + pts[..., 1:2] * rot[:, 1] + pts[..., 2:3] * rot[:, 2]


def _lm_frame(target, angles, rot, pos, lengths, iters: int, damping: float):
    """Damped Gauss-Newton on one frame: unknowns [rotation increment 3, wrist 3, angles 20]."""

    def step(carry, _):
        angles, rot, pos = carry
        joints, jac = pose_jacobian(angles, rot, lengths)
        res = (joints + pos - target).reshape(-1)
        jac = jac.reshape(-1, 26)
        jtj = jac.T @ jac
        lhs = jtj + damping * (jnp.diag(jnp.diag(jtj)) + 1e-6 * jnp.eye(26, dtype=jac.dtype))
        delta = -jnp.linalg.solve(lhs, (jac.T @ res)[:, None])[:, 0]
        rot = rot @ _rodrigues(delta[:3])
        return (clip_angles(angles + delta[6:]), rot, pos + delta[3:6]), None

    (angles, rot, pos), _ = jax.lax.scan(step, (clip_angles(angles), rot, pos), None, length=iters)
    return angles, rot, pos


def _fit_lengths(target, angles, rot, pos):
    """Least-squares bone lengths (20,) of one clip-hand for fixed poses (T frames)."""
    flex = angles[..., :15].reshape(angles.shape[:-1] + (5, 3))
    dirs = jnp.einsum("tij,tbj->tbi", rot, bone_vectors(flex, angles[..., 15:]))  # (T, 20, 3) world
    anc = jnp.asarray(ANCESTOR, target.dtype)
    rel = target - pos[:, None, :]  # (T, 21, 3)
    # joints j: rel_j ~ sum_b ANC[j, b] s_b dirs_b  ->  normal equations over (t, j, xyz)
    gram_dirs = jnp.einsum("tbi,tci->bc", dirs, dirs)  # summed over frames, per bone pair
    share = anc.T @ anc  # (20, 20): joints below both bones
    lhs = gram_dirs * share
    rhs = jnp.einsum("jb,tji,tbi->b", anc, rel, dirs)
    lhs = lhs + 1e-6 * jnp.trace(lhs) / NUM_BONES * jnp.eye(NUM_BONES, dtype=lhs.dtype)
    lengths = jnp.linalg.solve(lhs, rhs)
    rest = jnp.asarray(REST_LENGTHS, target.dtype)
    return jnp.clip(lengths, LENGTH_RANGE[0] * rest, LENGTH_RANGE[1] * rest)


@functools.partial(jax.jit, static_argnames=("rounds", "iters"))
def _project_hands(hands, rounds: int, iters: int, damping: float):
    """hands (M, T, 21, 3) right-hand motions -> (joints, lengths, angles)."""
    lengths = jnp.mean(geometry.bone_lengths(hands), axis=1)  # (M, 20)
    rest = jnp.asarray(REST_LENGTHS, hands.dtype)
    lengths = jnp.clip(lengths, LENGTH_RANGE[0] * rest, LENGTH_RANGE[1] * rest)
    pos = hands[:, :, 0]
    rel = hands - pos[:, :, None, :]
    rest_dirs = bone_vectors(jnp.zeros((5, 3), hands.dtype), jnp.zeros(5, hands.dtype))
    rest_palm = chain_joints(rest_dirs * lengths[:, :, None])[:, None, _PALM]  # (M, 1, 6, 3)
    rot = _kabsch(jnp.broadcast_to(rest_palm, rel[:, :, _PALM].shape), rel[:, :, _PALM])  # (M, T, 3, 3)
    angles = _initial_angles(jnp.einsum("mtji,mtkj->mtki", rot, rel))  # joints in the hand frame
    frame_solve = jax.vmap(jax.vmap(functools.partial(_lm_frame, iters=iters, damping=damping),
                                    in_axes=(0, 0, 0, 0, None)))
    for _ in range(rounds):
        angles, rot, pos = frame_solve(hands, angles, rot, pos, lengths)
        angles = safe_thumb(angles)
        lengths = jax.vmap(_fit_lengths)(hands, angles, rot, pos)
    angles, rot, pos = frame_solve(hands, angles, rot, pos, lengths)
    angles = safe_thumb(angles)
    joints = right_hand_fk(angles, rot, pos, lengths[:, None, :])
    return joints, lengths, angles, rot, pos


def project(motion, *, rounds: int = 1, iters: int = 3, damping: float = 1e-2, batch_size: int = 256) -> Projection:
    """Project motion (N, T, 2, 21, 3) (metres; numpy or JAX) onto the hand model.

    Clips are processed `batch_size` at a time (the last batch padded, so one compiled
    shape serves every batch). Raises ValueError on a wrong shape or non-finite joints.
    """
    motion = np.asarray(motion, np.float32)
    if motion.ndim != 5 or motion.shape[2:] != (skeleton.NUM_HANDS, skeleton.NUM_JOINTS, 3):
        raise ValueError(f"project: motion must be (N, T, 2, 21, 3), got shape {motion.shape}")
    if not np.all(np.isfinite(motion)):
        bad = int(np.argmax(~np.isfinite(motion).reshape(len(motion), -1).all(axis=1)))
        raise ValueError(f"project: clip {bad} has NaN or infinite joint positions")
    n, t = motion.shape[:2]
    # Both hands as right hands: mirror the left (hand axis 0) in x.
    mirror = HAND_MIRROR[:, None, :]  # (2, 1, 3)
    hands = (motion * mirror).transpose(0, 2, 1, 3, 4).reshape(n * 2, t, 21, 3)
    step = max(1, min(int(batch_size), n)) * 2
    outs = []
    for lo in range(0, n * 2, step):
        chunk = hands[lo:lo + step]
        pad = step - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        res = _project_hands(jnp.asarray(chunk), rounds=rounds, iters=iters, damping=damping)
        outs.append([np.asarray(r)[:step - pad] for r in res])
    joints, lengths, angles, rot, pos = (np.concatenate(parts) for parts in zip(*outs))
    joints = joints.reshape(n, 2, t, 21, 3).transpose(0, 2, 1, 3, 4) * mirror
    angles = angles.reshape(n, 2, t, 20).transpose(0, 2, 1, 3)
    error = np.linalg.norm(joints - motion, axis=-1).mean(axis=(1, 2, 3))
    return Projection(joints.astype(np.float32), lengths.reshape(n, 2, NUM_BONES),
                      angles[..., :15].reshape(n, t, 2, 5, 3), angles[..., 15:], error,
                      rot.reshape(n, 2, t, 3, 3).transpose(0, 2, 1, 3, 4), pos.reshape(n, 2, t, 3).transpose(0, 2, 1, 3))


def project_motion(motion, **kwargs) -> np.ndarray:
    """The projected joints (N, T, 2, 21, 3) of `project`."""
    return project(motion, **kwargs).motion


def project_file(src: str, out: str, **kwargs) -> dict:
    """Project every clip of a HandX-format or `.clips.npz` file into `out` (same format as
    `out`'s name: `.clips.npz` pickle-free, otherwise HandX), annotations kept. Clips are
    grouped by length. Returns {"clips", "mean_error_m", "max_error_m"}."""
    from handx_jax.data import handx_format, store

    clips = store.load_any(src)
    if not clips:
        raise ValueError(f"{src}: no clips to project")
    by_len: dict[tuple, list[str]] = {}
    for name, clip in clips.items():
        m = np.asarray(clip["motion"], np.float32)
        if m.ndim != 4 or m.shape[1:] != (2, 21, 3):
            raise ValueError(f"{src}: clip {name!r} field 'motion' has shape {m.shape}, expected (T, 2, 21, 3)")
        by_len.setdefault(m.shape, []).append(name)
    errors = {}
    out_clips = {name: dict(clip) for name, clip in clips.items()}
    for names in by_len.values():
        motion = np.stack([np.asarray(clips[k]["motion"], np.float32) for k in names])
        try:
            res = project(motion, **kwargs)
        except ValueError as err:
            raise ValueError(f"{src}: {err}") from None
        for k, name in enumerate(names):
            out_clips[name]["motion"] = res.motion[k]
            errors[name] = float(res.error[k])
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    if str(out).endswith(".clips.npz"):
        store.save_clips(out, out_clips)
    else:
        handx_format.save_handx(out, out_clips)
    vals = np.asarray(list(errors.values()))
    return {"clips": len(out_clips), "mean_error_m": float(vals.mean()), "max_error_m": float(vals.max())}
