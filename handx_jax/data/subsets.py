"""Deterministic, nested data-ratio subsets, so data-scaling runs compare like with like.

Every clip gets a rank from a seeded hash of its name; a ratio r keeps the ceil(r * N)
best-ranked clips. The same seed gives nested subsets (5 % inside 20 % inside 100 %), and
a clip's membership does not depend on the file order or on which other clips exist
beyond its rank.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np


def clip_rank_keys(names: Sequence[str], seed: int) -> np.ndarray:
    """Seeded 64-bit hash of each clip name (uint64), the subset ranking key."""
    keys = np.empty(len(names), dtype=np.uint64)
    salt = f"handx-subset:{int(seed)}:".encode()
    for i, name in enumerate(names):
        digest = hashlib.blake2b(salt + name.encode("utf-8"), digest_size=8).digest()
        keys[i] = int.from_bytes(digest, "little")
    return keys


def subset_count(total: int, ratio: float) -> int:
    """How many clips ratio keeps out of total (at least one when ratio > 0)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"data ratio must be in (0, 1], got {ratio}")
    return min(total, max(1, math.ceil(ratio * total - 1e-9))) if total else 0


def subset_indices(names: Sequence[str], ratio: float, seed: int) -> np.ndarray:
    """Indices (ascending, file order) of the clips kept at `ratio`."""
    count = subset_count(len(names), ratio)
    if count == len(names):
        return np.arange(len(names))
    keys = clip_rank_keys(names, seed)
    order = np.lexsort((np.asarray(names, dtype=object).astype(str), keys))  # ties by name
    return np.sort(order[:count])


def subset_names(names: Sequence[str], ratio: float, seed: int) -> list[str]:
    """Clip names kept at `ratio`, in their original order; nested across ratios."""
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("clip names must be unique to form subsets")
    return [names[i] for i in subset_indices(names, ratio, seed)]
