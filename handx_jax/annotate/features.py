"""Per-frame motion features of bimanual clips, vectorised over a batch (HandX's features).

Every quantity comes from the geometry layer (`handx_jax.hand.geometry`): flexion with
its 11-degree dead zone, spacing, fingertip distances, fingertip-to-other-palm (mean of the
5 nearest palm points), palm-palm (mean of the 30 smallest nearest-neighbour distances from
the left palm's points), palm relative position and wrist positions. This module only
validates input and batches clips.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from handx_jax.hand import geometry

FEATURE_KEYS = ("flexion", "spacing", "intra_tip_dist", "inter_tip_dist", "tip_palm_dist",
                "palm_palm_dist", "palm_rel", "wrist")


class FeatureError(ValueError):
    """Motion that cannot be measured (bad shape or non-finite values)."""


def check_motion(motion: np.ndarray, source: str = "motion") -> np.ndarray:
    """Validate and return motion as float32 (N, T, 2, 21, 3); errors name `source`."""
    motion = np.asarray(motion)
    if motion.ndim == 4:
        motion = motion[None]
    if motion.ndim != 5 or motion.shape[2:] != (2, 21, 3):
        raise FeatureError(f"{source}: expected motion (N, T, 2, 21, 3), got {motion.shape}")
    if motion.shape[1] < 2:
        raise FeatureError(f"{source}: needs at least 2 frames, got {motion.shape[1]}")
    motion = motion.astype(np.float32, copy=False)
    bad = ~np.isfinite(motion).reshape(motion.shape[0], -1).all(axis=1)
    if bad.any():
        raise FeatureError(f"{source}: clip(s) {np.flatnonzero(bad)[:10].tolist()} hold "
                           "non-finite joint positions")
    return motion


def extract_features(motion_ntjc: np.ndarray, chunk: int = 64,
                     workers: int = 1) -> dict[str, np.ndarray]:
    """Features of clips (N, T, 2, 21, 3) (metres, canonical frame) as arrays with N first.

    Returns `flexion` (N,T,2,5,3) rad, `spacing` (N,T,2,3) rad, `intra_tip_dist`
    (N,T,2,4) m (thumb tip to index..pinky tips), `inter_tip_dist` (N,T,5,5) m (left tip i
    to right tip j), `tip_palm_dist` (N,T,2,5) m (a hand's tips to the other palm),
    `palm_palm_dist` (N,T) m, `palm_rel` (N,T,3) m (right palm centre minus left),
    `wrist` (N,T,2,3) m. Clips are processed in chunks to bound memory; `workers` > 1
    spreads chunks over threads (numpy releases the GIL in its array loops).
    """
    motion = check_motion(motion_ntjc)
    starts = range(0, motion.shape[0], chunk)
    if workers > 1 and len(starts) > 1:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda i: _extract_chunk(motion[i:i + chunk]), starts))
    else:
        parts = [_extract_chunk(motion[i:i + chunk]) for i in starts]
    if not parts:
        parts = [_extract_chunk(motion)]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in FEATURE_KEYS}


def _extract_chunk(motion: np.ndarray) -> dict[str, np.ndarray]:
    corners = motion[..., geometry.PALM_CORNERS, :]  # (N, T, 2, 6, 3)
    centre = geometry.palm_centres(motion)  # (N, T, 2, 3)
    return {
        "flexion": geometry.flexion_angles(motion),
        "spacing": geometry.spacing_angles(motion).astype(np.float32),
        "intra_tip_dist": geometry.intra_tip_distances(motion).astype(np.float32),
        "inter_tip_dist": geometry.inter_tip_distances(motion).astype(np.float32),
        "tip_palm_dist": geometry.tip_to_other_palm(motion).astype(np.float32),
        "palm_palm_dist": geometry.palm_palm_distance(corners[..., 0, :, :],
                                                      corners[..., 1, :, :]),
        "palm_rel": (centre[..., 1, :] - centre[..., 0, :]).astype(np.float32),
        "wrist": motion[..., 0, :].astype(np.float32),
    }
