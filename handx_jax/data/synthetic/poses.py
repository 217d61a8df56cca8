"""Finger poses of the synthetic generator: named poses, flexion states and pinch solutions.

A finger pose is a vector (20,) radians: flexion (5, 3) flattened (thumb CMC/MCP/IP, then
MCP/PIP/DIP of index, middle, ring, pinky) followed by abduction (5,). DIP is always 2/3
of PIP for the four fingers, so straight-line blends of poses keep the coupling exactly.
"""

from __future__ import annotations

import numpy as np

from handx_jax.hand import ik, kinematics, skeleton

DIP_RATIO = ik.DIP_RATIO
FINGER_NAMES = skeleton.FINGERS
POSE_NAMES = ("open", "fist", "point", "pinch", "thumbs_up", "v_sign")

# Finger flexion states as (MCP, PIP) ranges in degrees, DIP = 2/3 PIP.
STATES = {
    "extended": ((0.0, 8.0), (0.0, 8.0)),
    "partially_bent": ((35.0, 50.0), (40.0, 55.0)),
    "fully_bent": ((75.0, 92.0), (85.0, 100.0)),
    "hyperextended": ((-30.0, -24.0), (0.0, 4.0)),
}
THUMB_STATES = {  # thumb CMC, MCP, IP
    "extended": ((-8.0, 0.0), (0.0, 5.0), (0.0, 8.0)),
    "partially_bent": ((20.0, 30.0), (25.0, 40.0), (30.0, 45.0)),
    "fully_bent": ((35.0, 45.0), (50.0, 65.0), (60.0, 80.0)),
}
# CMC, MCP, IP, CMC abduction: the thumb lies across the front of the curled fingers, so
# fingers curling into (or out of) a fist do not sweep through the thumb tip.
THUMB_TUCKED = (5.0, 15.0, 15.0, -38.0)
THUMB_FLAT = (-15.0, 0.0, 0.0, -30.0)  # thumb in the palm plane (palms pressed together)


def pose_vector(flexion_deg: np.ndarray, abduction_deg: np.ndarray) -> np.ndarray:
    """(20,) radians from flexion (5, 3) and abduction (5,) in degrees."""
    return np.deg2rad(np.concatenate([np.asarray(flexion_deg, float).reshape(15),
                                      np.asarray(abduction_deg, float)]))


def split(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose vectors (..., 20) -> flexion (..., 5, 3), abduction (..., 5)."""
    return pose[..., :15].reshape(pose.shape[:-1] + (5, 3)), pose[..., 15:]


def finger_row(mcp: float, pip: float) -> list[float]:
    return [mcp, pip, DIP_RATIO * pip]


def set_state(pose: np.ndarray, fingers, state: str, u: float) -> np.ndarray:
    """Copy of `pose` with `fingers` (indices) in `state`; u in [0, 1] picks within its range."""
    out = pose.copy()
    flex, abd = split(out)
    for f in fingers:
        if f == 0:
            rng3 = THUMB_STATES.get(state, THUMB_STATES["extended"])
            flex[0] = np.deg2rad([lo + u * (hi - lo) for lo, hi in rng3])
            abd[0] = 0.0
        else:
            (m0, m1), (p0, p1) = STATES[state]
            flex[f] = np.deg2rad(finger_row(m0 + u * (m1 - m0), p0 + u * (p1 - p0)))
    return out


def _thumb(pose: np.ndarray, spec) -> None:
    flex, abd = split(pose)
    flex[0] = np.deg2rad(spec[:3])
    abd[0] = np.deg2rad(spec[3])


def named_pose(name: str, u: float = 0.5, finger: int = 1, variant: int = 0) -> np.ndarray:
    """A named hand pose; `finger` is the pointing / pinching finger, `variant` a pinch solution."""
    pose = np.zeros(20)
    open_flex = 3.0 + 4.0 * u
    for f in range(1, 5):
        split(pose)[0][f] = np.deg2rad(finger_row(open_flex, open_flex))
    if name == "open":
        _thumb(pose, (0.0, 3.0 + 3 * u, 3.0 + 3 * u, 5.0))
        return pose
    if name == "flat":
        _thumb(pose, THUMB_FLAT)
        return pose
    if name in ("fist", "point", "thumbs_up", "v_sign"):
        pose = set_state(pose, (1, 2, 3, 4), "fully_bent", u)
        _thumb(pose, THUMB_TUCKED)
    if name == "point":
        split(pose)[0][finger] = np.deg2rad(finger_row(open_flex, open_flex))
    elif name == "thumbs_up":
        _thumb(pose, (-10.0, 0.0, 0.0, 15.0))
    elif name == "v_sign":
        for f, spread in ((1, 8.0 + 6 * u), (2, -8.0 - 6 * u)):
            split(pose)[0][f] = np.deg2rad(finger_row(open_flex, open_flex))
            split(pose)[1][f] = np.deg2rad(spread)
    elif name == "pinch":
        pose = pinch_pose(pose, finger, variant)
    elif name != "fist":
        raise ValueError(f"unknown pose {name!r}; known: {POSE_NAMES}")
    return pose


PINCH_VARIANTS = 16


_LIBRARY: list = []


def set_pinch_library(library: tuple[np.ndarray, np.ndarray]) -> None:
    """Install a library solved elsewhere (worker processes get the parent's)."""
    _LIBRARY[:] = [library]


def pinch_library() -> tuple[np.ndarray, np.ndarray]:
    """Pinch solutions: unknowns (4 fingers, PINCH_VARIANTS, 6) rad and tip gaps (4, V) m.

    Solved once per process by the batched IK of handx_jax.hand.ik from a fixed grid of
    preferred poses (deterministic: same inputs, same batch shape every time).
    """
    if not _LIBRARY:
        _LIBRARY.append(_solve_library())
    return _LIBRARY[0]


def _solve_library() -> tuple[np.ndarray, np.ndarray]:
    import jax.numpy as jnp

    grid = np.random.default_rng(12345)
    v = PINCH_VARIANTS
    pref = np.column_stack([
        grid.uniform(10, 50, 4 * v), grid.uniform(-20, 10, 4 * v), grid.uniform(10, 40, 4 * v),
        grid.uniform(5, 40, 4 * v), grid.uniform(25, 60, 4 * v), grid.uniform(25, 65, 4 * v),
    ])
    finger = np.repeat(np.arange(1, 5), v)
    q, gap = ik.solve_pinch(jnp.asarray(np.deg2rad(pref), jnp.float32), jnp.asarray(finger))
    return (np.asarray(q, np.float64).reshape(4, v, 6), np.asarray(gap, np.float64).reshape(4, v))


def pinch_pose(pose: np.ndarray, finger: int, variant: int) -> np.ndarray:
    """`pose` with the thumb tip on `finger`'s tip (a stored IK solution)."""
    q = pinch_library()[0][finger - 1, variant % PINCH_VARIANTS]
    out = pose.copy()
    flex, abd = split(out)
    flex[0] = [q[0], q[2], q[3]]
    abd[0] = q[1]
    flex[finger] = [q[4], q[5], DIP_RATIO * q[5]]
    abd[finger] = 0.0
    return out


def clip_pose(pose: np.ndarray) -> np.ndarray:
    """Clamp pose vectors (..., 20) into the joint limits, keeping DIP = 2/3 PIP."""
    flex, abd = split(pose)
    flex, abd = kinematics.clip_to_limits(flex, abd)
    flex = flex.copy()
    flex[..., 1:, 2] = DIP_RATIO * flex[..., 1:, 1]
    return np.concatenate([flex.reshape(pose.shape[:-1] + (15,)), abd], axis=-1)
