"""Conditioning masks for partial denoising.

A constraint is `(values, weight)`, both (B, T, F) in the model's normalised feature
space; at every sampling step the x0 prediction becomes `w * values + (1 - w) * x0`
(`samplers.apply_constraint`). Builders here give the weights for: in-betweening (first
and last frames), a given prefix (long-horizon stages), sparse keyframes, chosen joints at
chosen frames (contact keyframes), hand reaction (one hand given) and wrist trajectory.
Around a constrained frame the weight falls from `peak` (0.85) to `floor` (0.10) over
`width` (5) frames, which lets the generated part blend in; constrained frames
themselves get weight 1 when `hard=True` so they are reproduced exactly.
"""

from __future__ import annotations

import numpy as np

from handx_jax.data.representations import FEATURE_DIMS

CHANNELS = {"joint_pos": 3, "joint_pos_w_scalar_rot": 4}  # per joint: xyz (+ rotation scalar)


def feature_layout(representation: str) -> np.ndarray:
    """(2, 21, C) indices of each (hand, joint, channel) in the flat feature vector."""
    if representation not in CHANNELS:
        raise ValueError(f"unknown representation {representation!r}; choose one of {', '.join(CHANNELS)}")
    c = CHANNELS[representation]
    return np.arange(FEATURE_DIMS[representation]).reshape(2, 21, c)


def frame_weights(constrained_t: np.ndarray, peak: float = 0.85, floor: float = 0.10, width: int = 5,
                  hard: bool = True) -> np.ndarray:
    """(T,) weights from a boolean (T,) frame mask: 1 (or `peak`) on constrained frames, a
    linear fall from `peak` to `floor` over the next `width` frames, 0 beyond."""
    constrained_t = np.asarray(constrained_t, bool)
    frames = np.arange(len(constrained_t))
    if not constrained_t.any():
        return np.zeros(len(constrained_t), np.float32)
    dist = np.abs(frames[:, None] - frames[constrained_t][None, :]).min(axis=1)
    ramp = peak - (peak - floor) * (dist - 1) / max(width - 1, 1)
    w = np.where((dist >= 1) & (dist <= width), ramp, 0.0)
    w = np.where(dist == 0, 1.0 if hard else peak, w)
    return w.astype(np.float32)


def _broadcast(w_t: np.ndarray, feature_mask_f: np.ndarray, batch: int) -> np.ndarray:
    return np.broadcast_to((w_t[:, None] * feature_mask_f[None, :])[None], (batch, len(w_t), len(feature_mask_f))).astype(np.float32)


def inbetween_weight(batch: int, frames: int, dim: int, context: int = 5, **kw) -> np.ndarray:
    """First and last `context` frames given, everything between generated."""
    mask = np.zeros(frames, bool)
    mask[:context] = True
    mask[frames - context:] = True
    return _broadcast(frame_weights(mask, **kw), np.ones(dim, np.float32), batch)


def prefix_weight(batch: int, frames: int, dim: int, context: int = 10, **kw) -> np.ndarray:
    """First `context` frames given (the previous stage's end in long-horizon generation)."""
    if not 0 < context < frames:
        raise ValueError(f"context must be between 1 and {frames - 1} frames, got {context}")
    mask = np.zeros(frames, bool)
    mask[:context] = True
    return _broadcast(frame_weights(mask, **kw), np.ones(dim, np.float32), batch)


def keyframe_weight(batch: int, frames: int, dim: int, keyframes, **kw) -> np.ndarray:
    """Whole poses given at the listed frames."""
    mask = np.zeros(frames, bool)
    keyframes = np.asarray(keyframes, int)
    if keyframes.size and (keyframes.min() < 0 or keyframes.max() >= frames):
        raise ValueError(f"keyframes {keyframes.tolist()} outside 0..{frames - 1}")
    mask[keyframes] = True
    return _broadcast(frame_weights(mask, **kw), np.ones(dim, np.float32), batch)


def joint_keyframe_weight(batch: int, frames: int, representation: str, joints_at: dict) -> np.ndarray:
    """Positions of chosen joints given at chosen frames: `joints_at` maps a frame to its
    (hand, joint) pairs; each joint's xyz gets that frame's weight profile (the largest
    where profiles of several frames meet)."""
    layout = feature_layout(representation)
    w = np.zeros((frames, layout.size), np.float32)
    for frame, joints in joints_at.items():
        if not 0 <= int(frame) < frames:
            raise ValueError(f"keyframe {frame} outside 0..{frames - 1}")
        mask = np.zeros(frames, bool)
        mask[int(frame)] = True
        profile = frame_weights(mask)
        for hand, joint in joints:
            cols = layout[int(hand), int(joint), :3]
            w[:, cols] = np.maximum(w[:, cols], profile[:, None])
    return np.broadcast_to(w[None], (batch, frames, layout.size)).astype(np.float32)


def hand_reaction_weight(batch: int, frames: int, representation: str, given_hand: int) -> np.ndarray:
    """Every feature of `given_hand` (0 left, 1 right) given on every frame; the other hand generated."""
    if given_hand not in (0, 1):
        raise ValueError(f"given_hand must be 0 (left) or 1 (right), got {given_hand}")
    layout = feature_layout(representation)
    fmask = np.zeros(layout.size, np.float32)
    fmask[layout[given_hand].ravel()] = 1.0
    return _broadcast(np.ones(frames, np.float32), fmask, batch)


def wrist_trajectory_weight(batch: int, frames: int, representation: str) -> np.ndarray:
    """Both wrists' positions given on every frame; fingers generated."""
    layout = feature_layout(representation)
    fmask = np.zeros(layout.size, np.float32)
    fmask[layout[:, 0, :3].ravel()] = 1.0
    return _broadcast(np.ones(frames, np.float32), fmask, batch)
