"""Conditioning on a reference clip, as (values, weight) constraints.

`reference_constraint` turns a reference motion (T, 2, 21, 3) in metres into the
constraint `sample` blends into every x0 prediction: the reference's normalised features as
values, and a weight from `masks` for the mode:

- `inbetween`: first and last 5 frames given;
- `keyframes`: whole poses at the listed frames;
- `reaction_left` / `reaction_right`: that hand given on every frame, the other generated;
- `wrist`: both wrists' positions given on every frame, the fingers generated;
- `contact`: at each listed keyframe, only the joints of the reference's contacts there
  (fingertips within 2 cm of each other; a fingertip within 2.5 cm of the other palm, with
  that palm's corner joints), measured by the geometry layer with the annotation's
  thresholds (`handx_jax.hand.descriptors`).

Features are centred on the reference's own mean wrist midpoint, so samples come back in
that centred frame; `WorkdirSampler.conditioned` adds the centre back.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from handx_jax.data import representations
from handx_jax.diffusion import masks
from handx_jax.hand import descriptors, geometry

MODES = ("inbetween", "keyframes", "reaction_left", "reaction_right", "wrist", "contact")
KEYFRAME_MODES = ("keyframes", "contact")


def reference_constraint(reference, mode: str, representation: str, stats, batch: int,
                         keyframes: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values, weight), each (batch, T, F) float32, for `mode` from `reference` (T, 2, 21, 3)."""
    ref = np.asarray(reference, np.float32)
    if ref.ndim != 4 or ref.shape[1:] != (2, 21, 3):
        raise ValueError(f"reference motion must be (T, 2, 21, 3), got {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError("reference motion contains NaN or infinite values")
    if mode not in MODES:
        raise ValueError(f"unknown conditioning mode {mode!r}; choose one of {', '.join(MODES)}")
    if (mode in KEYFRAME_MODES) != (keyframes is not None):
        raise ValueError(f"keyframes are given with modes {' and '.join(map(repr, KEYFRAME_MODES))} and only then")
    feats = np.asarray(representations.to_features(ref, representation), np.float32)
    values = (feats - stats.mean) / stats.std
    frames, dim = values.shape
    if mode == "inbetween":
        weight = masks.inbetween_weight(batch, frames, dim)
    elif mode == "keyframes":
        weight = masks.keyframe_weight(batch, frames, dim, list(keyframes))
    elif mode == "contact":
        weight = masks.joint_keyframe_weight(batch, frames, representation,
                                             {int(f): contact_joints(ref, int(f)) for f in keyframes})
    elif mode == "wrist":
        weight = masks.wrist_trajectory_weight(batch, frames, representation)
    else:
        weight = masks.hand_reaction_weight(batch, frames, representation, given_hand=0 if mode == "reaction_left" else 1)
    values = np.broadcast_to(values[None], (batch, frames, dim)).astype(np.float32)
    return values, np.asarray(weight, np.float32)


def contact_joints(reference, frame: int) -> list[tuple[int, int]]:
    """(hand, joint) pairs in contact in `reference` (T, 2, 21, 3) at `frame`; ValueError
    when there is none, since a contact keyframe without a contact constrains nothing."""
    ref = np.asarray(reference, np.float32)
    if not 0 <= frame < len(ref):
        raise ValueError(f"keyframe {frame} outside 0..{len(ref) - 1}")
    pose = ref[frame]  # (2, 21, 3)
    tips = [int(t) for t in geometry.TIPS]
    joints = set()
    contact, palm = descriptors.TIP_CONTACT, descriptors.TIP_PALM_EDGES[0]
    for hand, other in np.argwhere(geometry.intra_tip_distances(pose) <= contact):
        joints |= {(int(hand), tips[0]), (int(hand), tips[1 + int(other)])}
    for left, right in np.argwhere(geometry.inter_tip_distances(pose) <= contact):
        joints |= {(0, tips[int(left)]), (1, tips[int(right)])}
    for hand, tip in np.argwhere(geometry.tip_to_other_palm(pose) < palm):
        joints.add((int(hand), tips[int(tip)]))
        joints |= {(1 - int(hand), int(c)) for c in geometry.PALM_CORNERS}
    if not joints:
        raise ValueError(f"the reference has no contact at frame {frame} (fingertips within "
                         f"{contact * 100:g} cm, or a fingertip within {palm * 100:g} cm "
                         "of the other palm)")
    return sorted(joints)
