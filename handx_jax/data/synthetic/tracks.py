"""Batched evaluation of keyframe tracks (minimum-jerk ramps) and per-frame degradation."""

from __future__ import annotations

import numpy as np


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk blend 10 s^3 - 15 s^4 + 6 s^5 on s in [0, 1] (zero speed and acceleration
    at both ends, so consecutive ramps join smoothly)."""
    return s * s * s * (10.0 + s * (-15.0 + 6.0 * s))


def pad_keys(tracks: list[list[tuple[int, np.ndarray]]]) -> tuple[np.ndarray, np.ndarray]:
    """Keyframe lists -> times (M, K) and values (M, K, D), padded by holding the last key."""
    k_max = max(len(t) for t in tracks)
    dim = len(tracks[0][0][1])
    times = np.zeros((len(tracks), k_max), dtype=np.float64)
    values = np.zeros((len(tracks), k_max, dim), dtype=np.float64)
    for m, keys in enumerate(tracks):
        n = len(keys)
        times[m, :n] = [k for k, _ in keys]
        values[m, :n] = [v for _, v in keys]
        last = times[m, n - 1]
        times[m, n:] = last + 1.0 + np.arange(k_max - n)
        values[m, n:] = values[m, n - 1]
    return times, values


def evaluate(times: np.ndarray, values: np.ndarray, frames: int) -> np.ndarray:
    """Values (M, T, D) at integer frames: v0 + sum_k (v_{k+1} - v_k) * min_jerk(s_k(t))."""
    t = np.arange(frames, dtype=np.float64)
    start, end = times[:, :-1, None], times[:, 1:, None]
    s = np.clip((t - start) / np.maximum(end - start, 1e-9), 0.0, 1.0)  # (M, K-1, T)
    delta = values[:, 1:] - values[:, :-1]  # (M, K-1, D)
    w = min_jerk(s)
    out = values[:, :1, :] + np.einsum("mkt,mkd->mtd", w, delta, optimize=False)
    return out


def dropped_frame_index(rng: np.random.Generator, frames: int, rate: float) -> np.ndarray:
    """Source frame per frame (T,) with about `rate` of frames dropped (replaced by the
    previous kept frame, as a capture system holds its last sample). Frame 0 is kept."""
    keep = rng.random(frames) >= rate
    keep[0] = True
    idx = np.where(keep, np.arange(frames), 0)
    return np.maximum.accumulate(idx)
