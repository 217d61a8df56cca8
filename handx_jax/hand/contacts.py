"""Contact refinement: close the fingertip contacts of a generated motion, kinematically valid.

Generated fingertips rarely close the last centimetres of a contact, so the contact labels
(thumb tip to another tip of its hand < `descriptors.INTRA_CONTACT_M`, a fingertip to the
closest point of the other palm < `descriptors.INTER_CONTACT_M`) seldom fire. `refine_contacts`:

1. projects the motion onto the hand model (`projection.project`);
2. chooses the pairs to close: those the prompt states (`prompt_contacts`: "the thumb touches
   the index tip", "the left index fingertip presses against the right palm"), pulled where
   they come within `named_margin` of their closest approach; optionally (radii > 0) also
   pairs that stay within a capture radius for `min_frames` consecutive frames;
3. gives each pulled pair a target distance per frame: `touch` inside its radius, rising
   linearly back to the distance itself over `release` beyond it;
4. per frame with a pulled pair, damped Gauss-Newton steps over the wrist pose and the 20
   joint angles (bone lengths of step 1 fixed) minimise the squared distance to the projected
   joints plus `weight` x the squared excess of each pulled pair over its target; angles stay
   in the joint-limit box, the other hand's palm is held where the previous round left it;
5. smooths each refined hand's change of pose over frames (frames are solved one by one).

The result is forward kinematics of the hand model again: constant bones per clip, every
angle inside its limits; hands without a pulled pair are the projection unchanged.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.hand import descriptors, geometry, kinematics, projection, skeleton

TIPS = geometry.TIPS  # thumb, index, middle, ring, pinky
FAR = 1e3  # target distance (metres) of a pair that is not pulled
_HAND_MIRROR = projection.HAND_MIRROR


class ContactSettings(NamedTuple):
    """Capture radii, targets and solver settings (metres). A radius of 0 turns that kind off."""

    # Capture by distance alone is off by default: on the quickstart model's samples of train
    # captions it barely moved contact F1 (docs/eval.md); pairs the prompt names are the lever.
    intra_radius: float = 0.0  # thumb tip to another tip of its hand
    inter_radius: float = 0.0  # a fingertip to the other hand's palm
    min_frames: int = 4  # consecutive frames within the radius that capture a pair
    intra_touch: float = 0.6 * descriptors.INTRA_CONTACT_M  # target distance of a captured pair
    inter_touch: float = 0.6 * descriptors.INTER_CONTACT_M
    release: float = 0.015  # the pull fades out over this much distance beyond the radius
    named_margin: float = 0.02  # a pair the prompt names is pulled where it is within this of its closest
    clearance: float = 1.25 * descriptors.INTRA_CONTACT_M  # thumb pairs kept apart stay this far
    apart_unnamed: bool = True  # with named pairs: a thumb pair the prompt does not name is kept apart
    smooth: float = 2.0  # Gaussian sigma (frames) over each refined hand's change of pose; 0 = off
    weight: float = 1e4  # pull weight against the per-coordinate distance to the projection
    iters: int = 20  # Gauss-Newton steps per round
    rounds: int = 2  # rounds (the other palm re-read in between)


class Refinement(NamedTuple):
    """Result of `refine_contacts` (numpy arrays)."""

    motion: np.ndarray  # (N, T, 2, 21, 3) refined joints
    projected: np.ndarray  # (N, T, 2, 21, 3) the projection they start from
    intra_captured: np.ndarray  # (N, 2, 4) bool: thumb tip vs index..pinky tip pulled
    inter_captured: np.ndarray  # (N, 2, 5) bool: fingertip of hand h vs the palm of 1 - h pulled
    moved: np.ndarray  # (N,) mean per-joint distance (metres) from the projection


def captured(dist: np.ndarray, radius, min_frames: int) -> np.ndarray:
    """(N, P) bool: distances (N, T, P) stay below `radius` (a number or (N, 1, P)) for
    `min_frames` consecutive frames."""
    near = np.asarray(dist) < radius
    m = max(1, min(int(min_frames), near.shape[1]))
    counts = np.cumsum(np.pad(near, ((0, 0), (1, 0), (0, 0))).astype(np.int32), axis=1)
    return np.any(counts[:, m:] - counts[:, :-m] >= m, axis=1)


def target_distances(dist: np.ndarray, capture: np.ndarray, radius, touch: float,
                     release: float) -> np.ndarray:
    """Per-frame targets (N, T, P) of distances (N, T, P): `touch` within `radius` (a number or
    (N, 1, P)), linear back to the distance at `radius + release`, `FAR` beyond and for pairs
    not captured (N, P)."""
    ramp = touch + (dist - radius) * (radius + release - touch) / release
    target = np.where(dist <= radius, touch, np.where(dist < radius + release, ramp, FAR))
    return np.where(capture[:, None, :], target, FAR).astype(np.float32)


_CONTACT_VERB = re.compile(r"\b(" + "|".join(descriptors.CONTACT_VERBS) + ")")
_FINGER_WORD = {name: k for k, name in enumerate(skeleton.FINGERS)} | {"little": 4}
_WORD = re.compile(r"\b(" + "|".join(_FINGER_WORD) + r"|left|right)\b")


def _sentences(text: str) -> list[str]:
    return [part for part in re.split(r"[.;!?]", text.lower()) if _CONTACT_VERB.search(part)]


def prompt_contacts(prompts: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The fingertip contacts prompts (left, right, relation) state, by keyword.

    intra (N, 2, 4): a sentence of hand h's description with "thumb", a contact verb (touch,
    contact, meet, tap, press, pinch) and index/middle/ring/pinky (or little) names those
    pairs. inter (N, 2, 5): a relation sentence with "palm" and a contact verb names the
    fingers (thumb..pinky) of the hand it mentions first ("left"/"right") on the other palm.
    """
    intra = np.zeros((len(prompts), 2, 4), bool)
    inter = np.zeros((len(prompts), 2, 5), bool)
    for i, prompt in enumerate(prompts):
        for hand in (0, 1):
            for sentence in _sentences(prompt[hand]):
                words = _WORD.findall(sentence)
                if "thumb" in words:
                    for word in words:
                        if _FINGER_WORD.get(word, 0) > 0:
                            intra[i, hand, _FINGER_WORD[word] - 1] = True
        for sentence in _sentences(prompt[2]):
            words = _WORD.findall(sentence)
            sides = [w for w in words if w in ("left", "right")]
            fingers = [_FINGER_WORD[w] for w in words if w in _FINGER_WORD]
            if "palm" in sentence and sides and fingers:
                inter[i, int(sides[0] == "right"), fingers] = True
    return intra, inter


def _pair_terms(dist, diff, target, jac_diff, sqrt_weight):
    """Hinged residuals sqrt(w) max(d - target, 0) (P,) and their Jacobian rows (P, 26)."""
    on = dist > target
    unit = diff / jnp.maximum(dist, 1e-9)[:, None]
    res = sqrt_weight * jnp.where(on, dist - target, 0.0)
    rows = sqrt_weight * on[:, None] * jnp.einsum("pi,pik->pk", unit, jac_diff)
    return res, rows


def _solve_frame(ref, angles, rot, pos, lengths, intra_target, intra_clear, inter_target, palm, *, iters, damping,
                 weight):
    """One right hand (or mirrored left): pose pulled towards its targets, near `ref` (21, 3)."""
    sqrt_weight = jnp.sqrt(jnp.asarray(weight, ref.dtype))

    def step(carry, _):
        angles, rot, pos = carry
        local, jac = projection.pose_jacobian(angles, rot, lengths)  # (21, 3), (21, 3, 26)
        joints = local + pos
        tip_diff = joints[TIPS[0]] - joints[TIPS[1:]]  # thumb minus the other tips (4, 3)
        tip_dist = jnp.sqrt(jnp.sum(tip_diff * tip_diff, -1))
        tip_jac = jac[TIPS[0]][None] - jac[TIPS[1:]]
        intra = _pair_terms(tip_dist, tip_diff, intra_target, tip_jac, sqrt_weight)
        close = tip_dist < intra_clear  # the other way round: keep d >= clear
        unit = tip_diff / jnp.maximum(tip_dist, 1e-9)[:, None]
        clear = (sqrt_weight * jnp.where(close, intra_clear - tip_dist, 0.0),
                 -sqrt_weight * close[:, None] * jnp.einsum("pi,pik->pk", unit, tip_jac))
        tips = joints[TIPS]
        nearest = palm[jnp.argmin(jnp.sum((tips[:, None, :] - palm[None]) ** 2, -1), axis=1)]  # (5, 3)
        palm_diff = tips - nearest
        inter = _pair_terms(jnp.sqrt(jnp.sum(palm_diff * palm_diff, -1)), palm_diff, inter_target,
                            jac[TIPS], sqrt_weight)
        res = jnp.concatenate([(joints - ref).reshape(-1), intra[0], clear[0], inter[0]])
        rows = jnp.concatenate([jac.reshape(-1, 26), intra[1], clear[1], inter[1]])
        jtj = rows.T @ rows
        lhs = jtj + damping * (jnp.diag(jnp.diag(jtj)) + 1e-6 * jnp.eye(26, dtype=jtj.dtype))
        delta = -jnp.linalg.solve(lhs, (rows.T @ res)[:, None])[:, 0]
        rot = rot @ kinematics.rotation_matrix(delta[:3])
        return (projection.clip_angles(angles + delta[6:]), rot, pos + delta[3:6]), None

    (angles, rot, pos), _ = jax.lax.scan(step, (angles, rot, pos), None, length=iters)
    angles = projection.safe_thumb(angles)
    return angles, rot, pos, projection.right_hand_fk(angles, rot, pos, lengths)


@functools.partial(jax.jit, static_argnames=("iters",))
def _solve_frames(ref, angles, rot, pos, lengths, intra_target, intra_clear, inter_target, palm, iters: int,
                  damping: float, weight: float):
    solve = functools.partial(_solve_frame, iters=iters, damping=damping, weight=weight)
    return jax.vmap(solve)(ref, angles, rot, pos, lengths, intra_target, intra_clear, inter_target, palm)


def _bucket(count: int, batch_size: int) -> int:
    """Padded batch size: the next power of two (at least 64), capped at `batch_size`."""
    return min(int(batch_size), max(64, 1 << (max(count, 1) - 1).bit_length()))


def gaussian_smooth(x: np.ndarray, sigma: float, axis: int = 1) -> np.ndarray:
    """Gaussian smoothing (sigma in frames, edges repeated) of `x` along `axis`."""
    if sigma <= 0:
        return x
    half = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    x = np.moveaxis(x, axis, 0)
    padded = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)])
    out = sum(w * padded[k:k + len(x)] for k, w in enumerate(kernel))
    return np.moveaxis(out, 0, axis).astype(x.dtype)


def _log_rotation(rot: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) of rotations (..., 3, 3) with angles below pi."""
    w = 0.5 * np.stack([rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0],
                        rot[..., 1, 0] - rot[..., 0, 1]], -1)
    sin = np.linalg.norm(w, axis=-1, keepdims=True)
    cos = 0.5 * (np.trace(rot, axis1=-2, axis2=-1)[..., None] - 1.0)
    angle = np.arctan2(sin, cos)
    return w * np.where(sin > 1e-8, angle / np.maximum(sin, 1e-8), 1.0)


def _plan(dist, radius: float, named, s: ContactSettings):
    """(captured (N, P), per-pair radius (N, 1, P)): pairs within `radius` for `min_frames`
    frames, and the `named` ones (N, P) wherever they are within `named_margin` of their closest."""
    n, _, p = dist.shape
    cap = captured(dist, radius, s.min_frames) if radius > 0 else np.zeros((n, p), bool)
    radius = np.full((n, 1, p), radius, np.float32)
    if named is not None:
        named = np.asarray(named, bool).reshape(n, p)
        closest = dist.min(axis=1, keepdims=True) + s.named_margin
        radius = np.where(named[:, None, :], np.maximum(radius, closest), radius)
        cap = cap | named
    return cap, radius


def _smoothed(world, where, solved, start, lengths, sigma):
    """`world` with each refined hand's change of pose (angles, wrist rotation and position
    against the projection) Gaussian-smoothed over frames, angles kept in the limits: each
    frame is solved on its own, and its solution can differ from its neighbours'."""
    angles, rot, pos = (np.array(a) for a in start)
    delta_angles, delta_rot, delta_pos = (np.zeros_like(a) for a in (angles, pos, pos))
    delta_angles[where] = solved[0] - angles[where]
    delta_rot[where] = _log_rotation(np.swapaxes(rot[where], -1, -2) @ solved[1])
    delta_pos[where] = solved[2] - pos[where]
    touched = np.zeros(angles.shape[:3], bool)
    touched[where] = True
    touched = gaussian_smooth(touched.astype(np.float32), sigma) > 0  # frames the smoothing reaches
    idx = np.nonzero(touched)
    new_angles = projection.safe_thumb(jnp.asarray(angles[idx] + gaussian_smooth(delta_angles, sigma)[idx]))
    new_rot = rot[idx] @ np.asarray(kinematics.rotation_matrix(gaussian_smooth(delta_rot, sigma)[idx]))
    new_pos = pos[idx] + gaussian_smooth(delta_pos, sigma)[idx]
    joints = projection.right_hand_fk(new_angles, jnp.asarray(new_rot), jnp.asarray(new_pos), jnp.asarray(lengths[idx]))
    world = world.copy()
    world[idx] = np.asarray(joints) * _HAND_MIRROR[idx[2]][:, None, :]
    return world


def refine_contacts(motion, settings: ContactSettings = ContactSettings(), *,
                    base: projection.Projection | None = None, intra_named=None, inter_named=None,
                    damping: float = 1e-2, batch_size: int = 4096) -> Refinement:
    """Close the contacts of motion (N, T, 2, 21, 3) as the module docstring describes.

    `base`: the motion's `projection.project` result when already at hand (else computed).
    `intra_named` (N, 2, 4), `inter_named` (N, 2, 5): pairs to close whatever their distance
    (e.g. `prompt_contacts` of the prompts), around the frames where they come closest; with
    `intra_named` and `settings.apart_unnamed` the prompt is taken as complete about thumb
    contacts (the rules captions always state them), so its unnamed thumb pairs are kept apart.
    Only frames with a pulled pair are solved, `batch_size` at a time.
    """
    s = settings
    base = projection.project(motion) if base is None else base
    if base.wrist_rot is None:
        raise ValueError("refine_contacts: base projection has no wrist pose (use projection.project)")
    proj = np.asarray(base.motion, np.float32)
    n, t = proj.shape[:2]
    for name, named, shape in (("intra_named", intra_named, (n, 2, 4)), ("inter_named", inter_named, (n, 2, 5))):
        if named is not None and np.shape(named) != shape:
            raise ValueError(f"refine_contacts: {name} must have shape {shape} for {n} clips, got {np.shape(named)}")
    intra_d = geometry.intra_tip_distances(proj).reshape(n, t, 8)
    inter_d = geometry.tip_to_other_palm(proj, nearest=1).reshape(n, t, 10)
    intra_cap, intra_r = _plan(intra_d, s.intra_radius, intra_named, s)
    inter_cap, inter_r = _plan(inter_d, s.inter_radius, inter_named, s)
    intra_t = target_distances(intra_d, intra_cap, intra_r, s.intra_touch, s.release).reshape(n, t, 2, 4)
    inter_t = target_distances(inter_d, inter_cap, inter_r, s.inter_touch, s.release).reshape(n, t, 2, 5)
    active = np.any(intra_t < FAR, axis=-1) | np.any(inter_t < FAR, axis=-1)  # (N, T, 2) hand-frames to solve
    # With named pairs and `apart_unnamed`, the thumb pairs the prompt does not name are kept
    # at least `clearance` apart wherever they are not pulled.
    hand_d = intra_d.reshape(n, t, 2, 4)
    apart = np.zeros_like(hand_d, bool)
    if intra_named is not None and s.apart_unnamed:
        apart = (intra_t >= FAR) & ~np.asarray(intra_named, bool).reshape(n, 1, 2, 4)
    intra_c = np.where(apart, s.clearance, 0.0).astype(np.float32)
    active |= np.any(apart & (hand_d < s.clearance), axis=-1)
    mirror = _HAND_MIRROR[:, None, :]  # (2, 1, 3) per hand: world <-> its own (right-hand) frame
    ref = proj * mirror
    angles = np.concatenate([base.flexion.reshape(n, t, 2, 15), base.abduction], axis=-1).astype(np.float32)
    rot, pos = np.asarray(base.wrist_rot, np.float32), np.asarray(base.wrist_pos, np.float32)
    lengths = np.broadcast_to(base.lengths[:, None], (n, t, 2, projection.NUM_BONES)).astype(np.float32)
    world = proj.copy()
    where = np.nonzero(active)
    if len(where[0]):
        hand = where[2]
        sel_ref, sel_len = ref[where], lengths[where]
        sel_intra, sel_clear, sel_inter = intra_t[where], intra_c[where], inter_t[where]
        sel_angles, sel_rot, sel_pos = angles[where], rot[where], pos[where]
        count = len(hand)
        step = _bucket(count, batch_size)
        weights = geometry.PALM_WEIGHTS.astype(np.float32)
        for _ in range(s.rounds):
            other = world[where[0], where[1], 1 - hand][:, geometry.PALM_CORNERS] * _HAND_MIRROR[hand][:, None, :]
            palm = np.einsum("pk,mkc->mpc", weights, other)  # (M, 100, 3) in the solved hand's frame
            outs = []
            for lo in range(0, count, step):
                part = slice(lo, lo + step)
                args = [sel_ref[part], sel_angles[part], sel_rot[part], sel_pos[part], sel_len[part],
                        sel_intra[part], sel_clear[part], sel_inter[part], palm[part]]
                pad = step - len(args[0])
                if pad:
                    args = [np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in args]
                res = _solve_frames(*(jnp.asarray(a) for a in args), iters=s.iters, damping=damping, weight=s.weight)
                outs.append([np.asarray(r)[:step - pad] for r in res])
            sel_angles, sel_rot, sel_pos, joints = (np.concatenate(parts) for parts in zip(*outs))
            world[where] = joints * _HAND_MIRROR[hand][:, None, :]
        if s.smooth > 0:
            world = _smoothed(world, where, (sel_angles, sel_rot, sel_pos), (angles, rot, pos), lengths, s.smooth)
    moved = np.linalg.norm(world - proj, axis=-1).mean(axis=(1, 2, 3))
    return Refinement(world.astype(np.float32), proj, intra_cap.reshape(n, 2, 4), inter_cap.reshape(n, 2, 5), moved)


def refine_motion(motion, settings: ContactSettings = ContactSettings(), **kwargs) -> np.ndarray:
    """The refined joints (N, T, 2, 21, 3) of `refine_contacts`."""
    return refine_contacts(motion, settings, **kwargs).motion
