"""Fingertip contacts per frame: thumb tip against the other tips of its hand, and any tip
against any tip of the other hand, closer than the annotation's contact distance (2 cm)."""

from __future__ import annotations

import numpy as np

from handx_jax.hand import descriptors, geometry, skeleton

TIP_CONTACT_M = descriptors.TIP_CONTACT  # the fingertip-contact threshold of the annotation stage


def _allowed_pairs() -> np.ndarray:
    """(P, 2) indices into the 10 tips (left 0-4, right 5-9, thumb first): intra-hand thumb
    pairs and every left-right pair."""
    pairs = [(h * 5, h * 5 + k) for h in range(2) for k in range(1, 5)]
    pairs += [(a, 5 + b) for a in range(5) for b in range(5)]
    return np.asarray(pairs, np.int64)


TIP_PAIRS = _allowed_pairs()
TIP_JOINTS = np.asarray([(h, j) for h in range(2) for j in skeleton.FINGERTIPS])  # (10, 2): hand, joint


def tip_contacts(motion_tjc: np.ndarray, threshold: float = TIP_CONTACT_M) -> np.ndarray:
    """(T, P) bool: whether tip pair `TIP_PAIRS[p]` is in contact at each frame."""
    motion = np.asarray(motion_tjc, np.float32)
    dist = np.concatenate([geometry.intra_tip_distances(motion[:, 0]), geometry.intra_tip_distances(motion[:, 1]),
                           geometry.inter_tip_distances(motion).reshape(len(motion), 25)], axis=1)  # TIP_PAIRS order
    return dist < threshold


def contact_segments(motion_tjc: np.ndarray, contacts_tp: np.ndarray, t: int) -> np.ndarray:
    """(K, 2, 3) endpoints of the tip pairs in contact at frame `t`."""
    pairs = TIP_PAIRS[contacts_tp[t]]
    a, b = TIP_JOINTS[pairs[:, 0]], TIP_JOINTS[pairs[:, 1]]
    return np.stack([motion_tjc[t, a[:, 0], a[:, 1]], motion_tjc[t, b[:, 0], b[:, 1]]], axis=1)
