"""Per-frame motion features of bimanual clips, vectorised over a batch (HandX's features).

Every quantity comes from the geometry layer (`handx_jax.hand.geometry`): flexion with
its 11-degree dead zone, spacing, fingertip distances, fingertip-to-other-palm (mean of the
5 nearest palm points), palm-palm (mean of the 30 smallest nearest-neighbour distances from
the left palm's points), palm relative position and wrist positions. This module
validates input, batches clips and, for event extraction, skips the palm distances that
cannot change an event.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from handx_jax.hand import descriptors, geometry

FEATURE_KEYS = ("flexion", "spacing", "intra_tip_dist", "inter_tip_dist", "tip_palm_dist",
                "palm_palm_dist", "palm_rel", "wrist")


# A palm distance whose lower bound clears the farthest state's edge by this much in every
# frame is in that state throughout; the margin is 20 times the float32 measure's error.
FAR_MARGIN = 1e-3


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


def extract_features(motion_ntjc: np.ndarray, chunk: int = 64, workers: int = 1,
                     exact: bool = True) -> dict[str, np.ndarray]:
    """Features of clips (N, T, 2, 21, 3) (metres, canonical frame) as arrays with N first.

    Returns `flexion` (N,T,2,5,3) rad, `spacing` (N,T,2,3) rad, `intra_tip_dist`
    (N,T,2,4) m (thumb tip to index..pinky tips), `inter_tip_dist` (N,T,5,5) m (left tip i
    to right tip j), `tip_palm_dist` (N,T,2,5) m (a hand's tips to the other palm),
    `palm_palm_dist` (N,T) m, `palm_rel` (N,T,3) m (right palm centre minus left),
    `wrist` (N,T,2,3) m. Clips are processed in chunks to bound memory; `workers` > 1
    spreads chunks over threads (numpy releases the GIL in its array loops).

    `exact=False` (for event extraction): a fingertip-palm or palm-palm signal whose lower
    bound (`far_bounds`) stays in its farthest state (Far: >= 3.5 cm, >= 12 cm) in every
    frame of the clip is not measured and holds that bound instead. It is Far throughout
    either way, and a signal that never changes state is one whole-clip event of that
    state, so the events are the same.
    """
    motion = check_motion(motion_ntjc)
    starts = range(0, motion.shape[0], chunk)
    if workers > 1 and len(starts) > 1:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda i: _extract_chunk(motion[i:i + chunk], exact), starts))
    else:
        parts = [_extract_chunk(motion[i:i + chunk], exact) for i in starts]
    if not parts:
        parts = [_extract_chunk(motion, exact)]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in FEATURE_KEYS}


def far_bounds(motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds of the palm-palm (N, T) and fingertip-to-other-palm (N, T, 2, 5)
    distances of clips (N, T, 2, 21, 3), float64.

    Every palm point is a convex combination of the palm's 6 corner joints, so it lies
    within the largest corner distance r of the palm centre c: a point is at least
    |p - c| - r from any point of that palm, and two palms at least |c_l - c_r| - r_l - r_r
    apart. Both features are means of such point distances.
    """
    corners = motion[..., geometry.PALM_CORNERS, :].astype(np.float64)  # (N, T, 2, 6, 3)
    centre = np.einsum("k,...kc->...c", geometry.PALM_MEAN_WEIGHTS, corners)
    offset = corners - centre[..., None, :]
    radius = np.sqrt(geometry.dot3(offset, offset).max(axis=-1))  # (N, T, 2)
    gap = centre[..., 1, :] - centre[..., 0, :]
    palm = np.sqrt(geometry.dot3(gap, gap)) - radius[..., 0] - radius[..., 1]
    tips = motion[..., geometry.TIPS, :].astype(np.float64) - centre[..., ::-1, None, :]
    return palm, np.sqrt(geometry.dot3(tips, tips)) - radius[..., ::-1, None]


def _palm_distances(motion: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fingertip-to-other-palm (N, T, 2, 5) and palm-palm (N, T) distances, float32; with
    `exact=False` the signals that stay Far by their lower bound hold the bound."""
    corners = motion[..., geometry.PALM_CORNERS, :]  # (N, T, 2, 6, 3)
    if exact:
        return (geometry.tip_to_other_palm(motion).astype(np.float32),
                geometry.palm_palm_distance(corners[..., 0, :, :], corners[..., 1, :, :]))
    palm_bound, tip_bound = far_bounds(motion)
    palm = palm_bound.astype(np.float32)
    near = palm_bound.min(axis=1) < descriptors.PALM_EDGES[-1] + FAR_MARGIN  # (N,)
    if near.any():
        palm[near] = geometry.palm_palm_distance(corners[near, :, 0], corners[near, :, 1])
    tip = tip_bound.astype(np.float32)
    far = tip_bound.min(axis=1) >= descriptors.TIP_PALM_EDGES[-1] + FAR_MARGIN  # (N, 2, 5)
    clip, hand = np.nonzero(~far.all(axis=-1))  # (clip, hand) pairs with a tip to measure
    if clip.size:
        tips = motion[clip, :, hand][..., geometry.TIPS, :]  # (K, T, 5, 3)
        other = motion[clip, :, 1 - hand][..., geometry.PALM_CORNERS, :]  # (K, T, 6, 3)
        tip[clip, :, hand] = geometry.tip_palm_distance(tips, other)
    return tip, palm


def _extract_chunk(motion: np.ndarray, exact: bool = True) -> dict[str, np.ndarray]:
    centre = geometry.palm_centres(motion)  # (N, T, 2, 3)
    tip_palm, palm_palm = _palm_distances(motion, exact)
    return {
        "flexion": geometry.flexion_angles(motion),
        "spacing": geometry.spacing_angles(motion).astype(np.float32),
        "intra_tip_dist": geometry.intra_tip_distances(motion).astype(np.float32),
        "inter_tip_dist": geometry.inter_tip_distances(motion).astype(np.float32),
        "tip_palm_dist": tip_palm,
        "palm_palm_dist": palm_palm,
        "palm_rel": (centre[..., 1, :] - centre[..., 0, :]).astype(np.float32),
        "wrist": motion[..., 0, :].astype(np.float32),
    }
