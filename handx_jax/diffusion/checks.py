"""Sanity checks for generated motion, and a tiny learnable dataset to run them on.

`write_toy_dataset` poses both hands with the parametric forward kinematics (so every
bone keeps its rest length exactly) in eight motions, one per combination of three
two-way captions (left fist or open, right fist or open, hands apart or still). A model
that learned anything reproduces bone lengths; noise does not.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

LEFT = ("Left: fingers curl into a fist.", "Left: fingers stay open.")
RIGHT = ("Right: fingers curl into a fist.", "Right: fingers stay open.")
RELATION = ("Relation: hands move apart.", "Relation: hands stay still.")
COMBOS = tuple(itertools.product(range(2), range(2), range(2)))


def toy_motion(left_curl: int, right_curl: int, relation: int, frames: int = 60) -> np.ndarray:
    """(T, 2, 21, 3) metres for one caption combination (deterministic)."""
    from handx_jax.hand import kinematics

    rng = np.random.default_rng(4 * left_curl + 2 * right_curl + relation)
    s = np.linspace(0.0, 1.0, frames)
    flexion = np.zeros((frames, 2, 5, 3))
    for hand, curl in enumerate((left_curl, right_curl)):
        if curl == 0:
            flexion[:, hand, 1:, :] = 1.2 * s[:, None, None]
            flexion[:, hand, 0, :] = 0.5 * s[:, None]
    flexion += rng.normal(0.0, 0.02, (1, 2, 5, 3))
    separation = 0.10 + (0.15 * s if relation == 0 else 0.0 * s)
    wrist = np.zeros((frames, 2, 3))
    wrist[:, 0, 0], wrist[:, 1, 0] = -separation, separation
    wrist += rng.normal(0.0, 0.02, (1, 2, 3))
    rot = np.zeros((frames, 2, 3))
    rot[:, :, 2] = np.pi / 2
    rot += rng.normal(0.0, 0.3, (1, 2, 3))
    joints = kinematics.forward_kinematics(dict(
        flexion=flexion, abduction=np.zeros((frames, 2, 5)), wrist_rot=rot, wrist_pos=wrist,
        scale=np.ones((frames, 2)), left=np.broadcast_to(np.array([True, False]), (frames, 2)),
    ))
    return np.asarray(joints, np.float32)


def write_toy_dataset(data_dir: str, num_train: int = 64, num_test: int = 8, frames: int = 60) -> None:
    """HandX-format train/test splits cycling through the eight toy motions."""
    from handx_jax.data import handx_format

    os.makedirs(data_dir, exist_ok=True)
    motions = {c: toy_motion(*c, frames=frames) for c in COMBOS}
    for split, n in (("train", num_train), ("test", num_test)):
        clips = {}
        for i in range(n):
            a, b, c = COMBOS[i % len(COMBOS)]
            clips[f"toy_{split}_{i:04d}"] = {
                "motion": motions[(a, b, c)], "left_annotation": [LEFT[a]],
                "right_annotation": [RIGHT[b]], "interaction_annotation": [RELATION[c]],
            }
        handx_format.save_handx(os.path.join(data_dir, f"{split}_can_pos_all_wotextfeat.npz"), clips)


def bone_length_error(motion_ntjc: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """|L / L_ref - 1| per (clip, frame, hand, bone); reference = rest lengths (20,) by default."""
    from handx_jax.hand import kinematics

    lengths = np.asarray(kinematics.bone_lengths(np.asarray(motion_ntjc, np.float32)))
    ref = kinematics.rest_bone_lengths() if reference is None else np.asarray(reference)
    return np.abs(lengths / ref - 1.0)


def bone_length_drift(motion_ntjc: np.ndarray) -> np.ndarray:
    """|L_t / median_t(L) - 1| per (clip, frame, hand, bone): how far each bone strays from
    its own typical length within a clip (no reference skeleton needed)."""
    from handx_jax.hand import kinematics

    lengths = np.asarray(kinematics.bone_lengths(np.asarray(motion_ntjc, np.float32)))
    return np.abs(lengths / np.median(lengths, axis=1, keepdims=True) - 1.0)


def jitter(motion_ntjc: np.ndarray, fps: int = 30) -> float:
    """Mean norm of the third finite difference x fps^3 (m/s^3) over joints and frames."""
    d3 = np.diff(np.asarray(motion_ntjc, np.float64), n=3, axis=1) * fps**3
    return float(np.linalg.norm(d3, axis=-1).mean())
