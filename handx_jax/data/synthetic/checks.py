"""Measurements that check generated clips against their ground truth (used by
tools/check_synth.py and the tests): contacts reached, inter-hand penetration of a capsule
model, joint limits, bone-length constancy, program variety."""

from __future__ import annotations

import json

import numpy as np

from handx_jax.hand import descriptors, geometry, kinematics, skeleton

INTRA_CONTACT_M = descriptors.TIP_CONTACT
PALM_CONTACT_M = descriptors.TIP_PALM_EDGES[0]
TIP_CONTACT_M = descriptors.TIP_CONTACT
PALM_PALM_CONTACT_M = descriptors.PALM_EDGES[0]
PENETRATION_M = 0.005

_PARENTS = geometry.BONE_PARENTS
_CHILDREN = geometry.BONE_CHILDREN


def capsule_radii() -> np.ndarray:
    """Radius (20,) of each bone's capsule at subject scale 1 (metres)."""
    radii = np.full(len(skeleton.BONES), 0.008)
    for b, (p, c) in enumerate(skeleton.BONES):
        if p == 0 and c != 13:
            radii[b] = 0.010  # metacarpals: the palm's thickness
        elif c in skeleton.FINGERTIPS:
            radii[b] = 0.007
    return radii


def contact_distances(motion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame distances as the annotation measures them (`handx_jax.hand.geometry`):
    intra (N,T,2,4), tip->other palm (N,T,2,5), tip-tip (N,T,5,5), palm-palm (N,T)."""
    motion = np.asarray(motion, dtype=np.float64)
    corners = motion[..., geometry.PALM_CORNERS, :]
    return {"intra": geometry.intra_tip_distances(motion),
            "tip_palm": geometry.tip_to_other_palm(motion),
            "tip_tip": geometry.inter_tip_distances(motion),
            "palm_palm": geometry.palm_palm_distance(corners[..., 0, :, :],
                                                     corners[..., 1, :, :])}


# (measured kind, ground-truth mask key, contact threshold in metres) for every contact kind.
CONTACT_KINDS = (("intra", "intra_contact", INTRA_CONTACT_M),
                 ("tip_palm", "inter_contact", PALM_CONTACT_M),
                 ("tip_tip", "inter_tip_contact", TIP_CONTACT_M),
                 ("palm_palm", "palm_contact", PALM_PALM_CONTACT_M))


def contact_reach(motion: np.ndarray, gt: dict) -> dict[str, tuple[int, int]]:
    """(reached, intended) frame counts per contact kind."""
    dist = contact_distances(motion)
    out = {}
    for key, mask_key, thresh in CONTACT_KINDS:
        mask = np.asarray(gt[mask_key], bool)
        out[key] = (int((dist[key][mask] < thresh).sum()), int(mask.sum()))
    return out


def unintended_contacts(motion: np.ndarray, gt: dict, margin: int = 3) -> dict[str, tuple]:
    """Measured contacts that the program did not intend, per kind: (frames more than
    `margin` frames away from an intended contact of the same pair, clips with any such
    frame, all measured-but-unintended frames). Approach and release ramps make the
    frames next to an intended contact read as contacts too; those are not counted."""
    from scipy.ndimage import binary_dilation

    dist = contact_distances(motion)
    out = {}
    for key, mask_key, thresh in CONTACT_KINDS:
        mask = np.asarray(gt[mask_key], bool)
        extra = (dist[key] < thresh) & ~mask
        window = np.ones((1, 2 * margin + 1) + (1,) * (mask.ndim - 2), bool)
        far = extra & ~binary_dilation(mask, structure=window)
        out[key] = (int(far.sum()), int(far.reshape(far.shape[0], -1).any(1).sum()),
                    int(extra.sum()))
    return out


def _segment_distance(p1, q1, p2, q2) -> np.ndarray:
    """Distance between segments [p1, q1] and [p2, q2] (broadcast over leading dims)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = np.sum(d1 * d1, -1)
    e = np.sum(d2 * d2, -1)
    f = np.sum(d2 * r, -1)
    c = np.sum(d1 * r, -1)
    b = np.sum(d1 * d2, -1)
    denom = np.maximum(a * e - b * b, 1e-12)
    s = np.clip((b * f - c * e) / denom, 0.0, 1.0)
    t = (b * s + f) / np.maximum(e, 1e-12)
    t_c = np.clip(t, 0.0, 1.0)
    s = np.where((t < 0) | (t > 1), np.clip((b * t_c - c) / np.maximum(a, 1e-12), 0.0, 1.0), s)
    diff = (p1 + d1 * s[..., None]) - (p2 + d2 * t_c[..., None])
    return np.linalg.norm(diff, axis=-1)


def penetration(motion: np.ndarray, scale=None, chunk: int = 16) -> np.ndarray:
    """Deepest inter-hand capsule overlap (N, T) in metres (0 when apart)."""
    motion = np.asarray(motion, dtype=np.float64)
    n = motion.shape[0]
    scale = np.ones(n) if scale is None else np.asarray(scale, np.float64)
    radii = capsule_radii()
    out = np.zeros(motion.shape[:2])
    for i in range(0, n, chunk):
        m = motion[i:i + chunk]
        p, q = m[..., _PARENTS, :], m[..., _CHILDREN, :]  # (n, T, 2, 20, 3)
        d = _segment_distance(p[:, :, 0, :, None, :], q[:, :, 0, :, None, :],
                              p[:, :, 1, None, :, :], q[:, :, 1, None, :, :])  # (n,T,20,20)
        rsum = (radii[:, None] + radii[None, :]) * scale[i:i + chunk, None, None, None]
        out[i:i + chunk] = np.maximum(rsum - d, 0.0).reshape(d.shape[:2] + (-1,)).max(-1)
    return out


def contact_frames(gt: dict) -> np.ndarray:
    """(N, T) True where any contact between the hands is intended."""
    return (np.asarray(gt["inter_contact"]).any(axis=(-1, -2)) |
            np.asarray(gt["inter_tip_contact"]).any(axis=(-1, -2)) |
            np.asarray(gt["palm_contact"], bool))


def limit_violations(joint_angles: np.ndarray, tol: float = 1e-6) -> int:
    """Number of angle values outside the joint limits (joint_angles (..., 20) radians)."""
    flex = joint_angles[..., :15].reshape(joint_angles.shape[:-1] + (5, 3))
    abd = joint_angles[..., 15:]
    lo_f, hi_f = kinematics.FLEXION_LIMITS
    lo_a, hi_a = kinematics.ABDUCTION_LIMITS
    return int((flex < lo_f - tol).sum() + (flex > hi_f + tol).sum() +
               (abd < lo_a - tol).sum() + (abd > hi_a + tol).sum())


def bone_length_deviation(motion: np.ndarray) -> tuple[float, float]:
    """(max relative deviation of bone lengths from frame 0, float32 rounding bound on it).

    The bound is what rounding joint coordinates to float32 alone can cause: each coordinate
    moves by at most half an ulp, so a length by at most sqrt(3) * ulp(|coords|) / length.
    """
    m = np.asarray(motion, dtype=np.float64)
    lengths = geometry.bone_lengths(m)
    rel = np.abs(lengths - lengths[:, :1]) / lengths[:, :1]
    ulp = np.spacing(np.abs(m).max(axis=(-1, -2)).astype(np.float32)).astype(np.float64)
    bound = 2 * np.sqrt(3.0) * ulp[..., None] / lengths[:, :1]  # both ends, both frames
    return float(rel.max()), float(bound.max())


def program_key(program: dict) -> str:
    return json.dumps(program, sort_keys=True, separators=(",", ":"))


def skeleton_key(program: dict) -> str:
    """The discrete structure of a program (actions, fingers, slots, relation), no numbers."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items()
                    if not isinstance(v, float) and k not in ("delay", "duration", "variant",
                                                               "cycle", "start_u", "u")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    return program_key(strip(program))


FAMILIES = ("finger_flexing", "finger_spacing", "finger_tip_contact", "wrist_trajectory",
            "finger_palm_distance", "palm_palm_distance", "palm_palm_relative_position")


def family_coverage(records: list[dict]) -> dict[str, float]:
    """Fraction of clips with at least one ground-truth event of each descriptor family
    (finger_tip_contact counts both in-hand and between-hand contacts)."""
    counts = {f: 0 for f in FAMILIES}
    for rec in records:
        seen = {e["family"] for evs in rec["events"].values() for e in evs}
        for f in FAMILIES:
            counts[f] += f in seen
    return {f: counts[f] / max(len(records), 1) for f in FAMILIES}
