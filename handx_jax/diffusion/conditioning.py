"""Conditioning on a reference clip (DESIGN section 7 modes), as (values, weight) constraints.

`reference_constraint` turns a reference motion (T, 2, 21, 3) in metres into the
constraint `sample` blends into every x0 prediction: the reference's normalised features as
values, and a weight from `masks` for the mode:

- `inbetween`: first and last 5 frames given;
- `keyframes`: whole poses at the listed frames;
- `reaction_left` / `reaction_right`: that hand given on every frame, the other generated;
- `wrist`: both wrists' positions given on every frame, the fingers generated.

Features are centred on the reference's own mean wrist midpoint, so samples come back in
that centred frame; `WorkdirSampler.conditioned` adds the centre back.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from handx_jax.data import representations
from handx_jax.diffusion import masks

MODES = ("inbetween", "keyframes", "reaction_left", "reaction_right", "wrist")


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
    if (mode == "keyframes") != (keyframes is not None):
        raise ValueError("keyframes are given with mode 'keyframes' and only then")
    feats = np.asarray(representations.to_features(ref, representation), np.float32)
    values = (feats - stats.mean) / stats.std
    frames, dim = values.shape
    if mode == "inbetween":
        weight = masks.inbetween_weight(batch, frames, dim)
    elif mode == "keyframes":
        weight = masks.keyframe_weight(batch, frames, dim, list(keyframes))
    elif mode == "wrist":
        weight = masks.wrist_trajectory_weight(batch, frames, representation)
    else:
        weight = masks.hand_reaction_weight(batch, frames, representation, given_hand=0 if mode == "reaction_left" else 1)
    values = np.broadcast_to(values[None], (batch, frames, dim)).astype(np.float32)
    return values, np.asarray(weight, np.float32)
