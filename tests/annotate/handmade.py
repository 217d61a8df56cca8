"""Hand-made clips for the annotation tests: a simple forward model with known angles.

Right hand: wrist at a chosen point, fingers along +y, palm facing down (-z); the left
hand is its mirror in x. Finger joints bend towards the palm by the given angles, so the
true flexion, contacts and wrist paths of every frame are known.
"""

import numpy as np

from handx_jax.hand import skeleton

# Right-hand rest layout (metres): MCP offsets from the wrist and phalanx lengths.
MCP_OFFSETS = {"index": (-0.025, 0.09, 0.0), "middle": (0.0, 0.095, 0.0),
               "ring": (0.02, 0.09, 0.0), "pinky": (0.038, 0.08, 0.0)}
PHALANGES = {"index": (0.04, 0.025, 0.022), "middle": (0.045, 0.028, 0.024),
             "ring": (0.042, 0.026, 0.022), "pinky": (0.032, 0.02, 0.018)}
THUMB_CMC = (-0.025, 0.025, -0.01)
THUMB_DIR = (-0.6, 0.8, 0.0)
THUMB_BONES = (0.04, 0.032, 0.026)


def _rot_x(angle):
    """Rotation matrices (..., 3, 3) about +x (bending +y towards -z for positive angles)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, s], -1),
                     np.stack([z, -s, c], -1)], -2)


def _rot_z(angle):
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def right_hand(flex, spread=None):
    """Joints (T, 21, 3) of a right hand at the origin from flex (T, 5, 3) radians.

    Non-thumb joints bend about the hand's lateral axis towards the palm; the thumb's
    three joints bend in the palm plane towards the little finger. `spread` (T, 4) rotates
    each non-thumb finger about the palm normal (abduction) in radians.
    """
    flex = np.asarray(flex, dtype=np.float64)
    frames = flex.shape[0]
    joints = np.zeros((frames, 21, 3))
    spread = np.zeros((frames, 4)) if spread is None else np.asarray(spread, np.float64)
    for f_i, finger in enumerate(skeleton.FINGERS):
        chain = skeleton.CHAINS[finger]
        if finger == "thumb":
            pos = np.broadcast_to(np.array(THUMB_CMC), (frames, 3)).copy()
            joints[:, chain[1]] = pos
            direction = np.broadcast_to(np.array(THUMB_DIR) / np.linalg.norm(THUMB_DIR),
                                        (frames, 3))
            total = np.zeros(frames)
            for k, length in enumerate(THUMB_BONES):
                total = total + flex[:, 0, k]
                d = np.einsum("tij,tj->ti", _rot_z(-total), direction)
                pos = pos + length * d
                joints[:, chain[k + 2]] = pos
            continue
        pos = np.broadcast_to(np.array(MCP_OFFSETS[finger]), (frames, 3)).copy()
        joints[:, chain[1]] = pos
        base = np.einsum("tij,j->ti", _rot_z(spread[:, f_i - 1]), np.array([0.0, 1.0, 0.0]))
        total = np.zeros(frames)
        for k, length in enumerate(PHALANGES[finger]):
            total = total + flex[:, f_i, k]
            # bend about the finger's own lateral axis: rotate in the plane of base and -z
            d = np.cos(total)[:, None] * base + np.sin(total)[:, None] * np.array([0, 0, -1.0])
            pos = pos + length * d
            joints[:, chain[k + 2]] = pos
    return joints


def clip(flex, wrist, spread=None):
    """Clip (T, 2, 21, 3): flex (T, 2, 5, 3) radians, wrist (T, 2, 3) metres."""
    flex = np.asarray(flex, dtype=np.float64)
    out = np.zeros((flex.shape[0], 2, 21, 3))
    for h in range(2):
        joints = right_hand(flex[:, h], None if spread is None else spread[:, h])
        if h == skeleton.LEFT:
            joints = joints * np.array([-1.0, 1.0, 1.0])
        out[:, h] = joints + np.asarray(wrist)[:, h, None, :]
    return out.astype(np.float32)


def still_clip(frames=60, separation=0.3, flex_value=0.2):
    """Both hands relaxed, still, `separation` metres apart along x."""
    flex = np.full((frames, 2, 5, 3), flex_value)
    wrist = np.zeros((frames, 2, 3))
    wrist[:, 0, 0] = -separation / 2
    wrist[:, 1, 0] = separation / 2
    return clip(flex, wrist), flex, wrist


def random_clip(rng, frames=60):
    """A clip with random smooth flexion, wrist drift, and injected contacts/hyperextension.

    Contacts are made by moving a fingertip joint onto its partner for a random interval
    (thumb onto another fingertip of the same hand, or a fingertip onto the centre of the
    other palm); hyperextension by a negative MCP angle for an interval.
    """
    knots = np.linspace(0, frames - 1, 5)
    flex = np.empty((frames, 2, 5, 3))
    for h in range(2):
        for f in range(5):
            for j in range(3):
                flex[:, h, f, j] = np.interp(np.arange(frames), knots,
                                             rng.uniform(0.0, 1.3, size=5))
    if rng.random() < 0.5:
        h, f = rng.integers(2), rng.integers(1, 5)
        s = rng.integers(0, frames - 12)
        flex[s:s + rng.integers(8, 20), h, f, 0] = -0.6
        flex[:, h, f, 1:] = np.maximum(flex[:, h, f, 1:], 0.9)
    wrist = np.zeros((frames, 2, 3))
    wrist[:, 0, 0], wrist[:, 1, 0] = -0.15, 0.15
    wrist += np.linspace(0, 1, frames)[:, None, None] * rng.uniform(-0.08, 0.08, size=(1, 2, 3))
    motion = clip(flex, wrist)
    for _ in range(rng.integers(0, 3)):  # thumb onto another fingertip of the same hand
        h, f = rng.integers(2), rng.integers(1, 5)
        s = int(rng.integers(0, frames - 10))
        e = s + int(rng.integers(6, 15))
        motion[s:e, h, 16] = motion[s:e, h, skeleton.FINGERTIPS[f]] + np.float32(0.004)
    if rng.random() < 0.5:  # a fingertip onto the centre of the other palm
        h, f = rng.integers(2), rng.integers(0, 5)
        s = int(rng.integers(0, frames - 10))
        e = s + int(rng.integers(6, 15))
        palm_centre = motion[s:e, 1 - h][:, [0, 1, 4, 10, 7]].mean(axis=1)
        motion[s:e, h, skeleton.FINGERTIPS[f]] = palm_centre + np.float32(0.005)
    return motion
