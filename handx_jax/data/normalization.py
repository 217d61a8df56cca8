"""Per-feature normalisation statistics over the training split, in one streaming pass.

Chunks of clips are turned into features and merged with Chan et al.'s parallel
update of (count, mean, M2), so memory stays bounded by one chunk. Standard deviations
under `STD_FLOOR` become 1 (constant features such as the rotation scalar at the wrist).
Stored as `DIR/stats_<representation>.npz` (pickle-free).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable

import numpy as np
from tqdm import tqdm

from handx_jax.data import handx_format, representations, store

STD_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class Stats:
    """Per-feature mean and (floored) standard deviation, float32 (F,)."""

    mean: np.ndarray
    std: np.ndarray
    count: int = 0

    def normalize(self, x):
        return (x - self.mean) / self.std

    def denormalize(self, x):
        return x * self.std + self.mean


class RunningMoments:
    """Streaming mean/variance over rows, merged chunk by chunk (float64 accumulators)."""

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)

    def update(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64).reshape(-1, self.mean.shape[0])
        n = rows.shape[0]
        if n == 0:
            return
        chunk_mean = rows.mean(axis=0)
        chunk_m2 = ((rows - chunk_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = chunk_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + chunk_m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def stats(self) -> Stats:
        if self.count == 0:
            raise ValueError("no rows to compute statistics from")
        std = np.sqrt(self.m2 / self.count)
        std = np.where(std < STD_FLOOR, 1.0, std)
        return Stats(self.mean.astype(np.float32), std.astype(np.float32), self.count)


def table_features(table: store.ClipTable, representation: str, start: int = 0,
                   stop: int | None = None) -> list[np.ndarray]:
    """Features (T_i, F) float32 of clips start..stop, batched over clips of equal length."""
    stop = len(table) if stop is None else stop
    lengths = np.diff(table.offsets[start:stop + 1])
    out: list[np.ndarray | None] = [None] * (stop - start)
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        index = table.offsets[start + members][:, None] + np.arange(length)[None]
        motion = np.asarray(table.motion[index], np.float32)  # (n, T, 2, 21, 3)
        feats = representations.to_features(motion, representation).astype(np.float32)
        for k, m in enumerate(members):
            out[m] = feats[k]
    return out


def compute_stats(chunks: Iterable[np.ndarray], dim: int) -> Stats:
    """Stats over an iterable of feature arrays (..., dim)."""
    moments = RunningMoments(dim)
    for chunk in chunks:
        moments.update(chunk)
    return moments.stats()


def compute_table_stats(table: store.ClipTable, representation: str,
                        chunk_clips: int = 4096, progress: bool = True) -> Stats:
    """One streaming pass over a clip table: features per chunk, merged moments."""
    dim = representations.FEATURE_DIMS[representation]

    def chunks():
        starts = range(0, len(table), chunk_clips)
        for start in tqdm(starts, desc=f"stats {representation}", disable=not progress,
                          leave=False):
            feats = table_features(table, representation, start,
                                   min(start + chunk_clips, len(table)))
            yield np.concatenate(feats, axis=0)

    return compute_stats(chunks(), dim)


def stats_path(data_dir: str | os.PathLike, representation: str) -> str:
    """DIR/stats_<rep>.npz, or its place under `store.derived_dir` when DIR is read-only."""
    path = os.path.join(os.fspath(data_dir), f"stats_{representation}.npz")
    if os.path.isfile(path):
        return path
    return os.path.join(store.derived_dir(data_dir), os.path.basename(path))


def source_fingerprint(path: str | os.PathLike) -> str:
    """Name, size and mtime of the file statistics were computed from (detects staleness)."""
    st = os.stat(path)
    return f"{os.path.basename(os.fspath(path))}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def save_stats(path: str | os.PathLike, stats: Stats, representation: str,
               source: str | os.PathLike | None = None) -> None:
    arrays = {"mean": stats.mean, "std": stats.std, "count": np.int64(stats.count),
              "representation": np.array(representation)}
    if source is not None:
        arrays["source"] = np.array(source_fingerprint(source))
    handx_format.atomic_savez(path, arrays, allow_pickle=False)


def recorded_source(path: str | os.PathLike) -> str | None:
    """The source fingerprint stored with statistics, None when not recorded."""
    with np.load(path, allow_pickle=False) as data:
        return str(data["source"]) if "source" in data.files else None


def load_stats(path: str | os.PathLike, representation: str | None = None) -> Stats:
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as data:
        stored = str(data["representation"])
        if representation is not None and stored != representation:
            raise ValueError(f"{path}: statistics are for {stored!r}, not {representation!r}")
        stats = Stats(data["mean"].astype(np.float32), data["std"].astype(np.float32),
                      int(data["count"]))
    dim = representations.FEATURE_DIMS.get(stored)
    if dim is not None and stats.mean.shape != (dim,):
        raise ValueError(f"{path}: mean has shape {stats.mean.shape}, expected ({dim},)")
    return stats


def load_or_compute_stats(data_dir: str | os.PathLike, representation: str,
                          split: str = "train", progress: bool = True) -> Stats:
    """Stats for `representation` from DIR/stats_<rep>.npz, computed from `split` if missing.

    Stored statistics are recomputed when the split file they came from has changed (its
    name, size or mtime differ), so regenerated data never meets stale statistics.
    """
    representations._check(representation)
    path = stats_path(data_dir, representation)
    try:
        source = store.find_split(data_dir, split)
    except FileNotFoundError:
        source = None
    if os.path.isfile(path):
        recorded = recorded_source(path)
        if source is None or recorded is None or recorded == source_fingerprint(source):
            return load_stats(path, representation)
    if source is None:
        store.find_split(data_dir, split)  # raises FileNotFoundError naming what is missing
    table = store.load_any_table(source)
    stats = compute_table_stats(table, representation, progress=progress)
    save_stats(path, stats, representation, source=source)
    return stats
