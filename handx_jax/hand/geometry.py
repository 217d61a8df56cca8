"""Geometry shared by features, the generator and the metrics: palm points, canonical frame."""

import numpy as np

from handx_jax.hand import skeleton

POINTS_PER_TRIANGLE = 25


def _barycentric_grid(n: int = POINTS_PER_TRIANGLE) -> np.ndarray:
    """Fixed barycentric weights (n, 3) spread over a triangle (reproducible, no RNG)."""
    # A triangular lattice with 7 rows holds 28 points; keep the 25 nearest the centroid
    # so the set is symmetric-ish and deterministic.
    rows = 7
    pts = []
    for i in range(rows):
        for j in range(rows - i):
            a = (i + 1 / 3) / (rows + 0.0)
            b = (j + 1 / 3) / (rows + 0.0)
            pts.append((1.0 - a - b, a, b))
    pts = np.asarray(pts, dtype=np.float64)
    pts = np.clip(pts, 0.0, None)
    pts /= pts.sum(axis=1, keepdims=True)
    centre = np.full(3, 1 / 3)
    order = np.argsort(np.linalg.norm(pts - centre, axis=1), kind="stable")
    return pts[np.sort(order[:n])]


PALM_BARYCENTRIC = _barycentric_grid()  # (25, 3)


def palm_points(joints: np.ndarray) -> np.ndarray:
    """Palm samples (..., 100, 3) from joints (..., 21, 3): 25 fixed points per palm triangle."""
    tri = np.asarray(skeleton.PALM_TRIANGLES)  # (4, 3)
    corners = joints[..., tri, :]  # (..., 4, 3, 3)
    pts = np.einsum("pk,...tkc->...tpc", PALM_BARYCENTRIC.astype(joints.dtype), corners)
    return pts.reshape(*joints.shape[:-2], tri.shape[0] * PALM_BARYCENTRIC.shape[0], 3)


def canonical_transform(motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (3, 3) and origin (3,) of the HandX canonical frame from frame 0 of a clip.

    motion: (T, 2, 21, 3). +x from left wrist to right wrist, +z up (world z kept as close as
    possible), +y = z cross x (towards the fingertips for hands facing forward).
    """
    left, right = motion[0, skeleton.LEFT, 0], motion[0, skeleton.RIGHT, 0]
    x = right - left
    x = x - np.array([0.0, 0.0, 1.0]) * x[2]  # keep the frame level
    norm = np.linalg.norm(x)
    if norm < 1e-8:
        x = np.array([1.0, 0.0, 0.0])
    else:
        x = x / norm
    z = np.array([0.0, 0.0, 1.0])
    y = np.cross(z, x)
    rot = np.stack([x, y, z], axis=0)  # rows are the new axes
    origin = 0.5 * (left + right)
    return rot, origin


def canonicalize(motion: np.ndarray) -> np.ndarray:
    """Express a clip (T, 2, 21, 3) in the canonical frame of its first frame."""
    rot, origin = canonical_transform(motion)
    return np.einsum("ij,...j->...i", rot, motion - origin).astype(motion.dtype)
