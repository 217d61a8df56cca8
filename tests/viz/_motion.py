"""Clips with known fingertip contacts for the viewing and rendering tests."""

import numpy as np

from handx_jax.hand import skeleton
from handx_jax.viz import contacts
from tests.data._clips import rest_hand

THUMB_TIP, INDEX_TIP = skeleton.FINGERTIPS[0], skeleton.FINGERTIPS[1]
CONTACT_FRAMES = range(10, 20)


def clips_with_contact(n: int = 2, frames: int = 60) -> dict:
    """`n` clips of two rest hands 0.4 m apart, swaying; in the first, the right index tip
    rests 5 mm from the left thumb tip on frames 10-19 and no tips touch on other frames."""
    left = rest_hand()
    pose = np.stack([left + [-0.2, 0.0, 0.0], left * [-1.0, 1.0, 1.0] + [0.2, 0.0, 0.0]])  # (2, 21, 3)
    t = np.arange(frames)[:, None, None, None] / 30.0
    clips = {}
    for i in range(n):
        sway = 0.03 * np.sin(2 * np.pi * (0.5 + 0.2 * i) * t) * np.array([0.0, 1.0, 1.0])
        motion = (pose + sway).astype(np.float32)
        clips[f"clip_{i:04d}"] = {"motion": motion, "left_annotation": [f"left hand waves {i}"],
                                  "right_annotation": [f"right hand waves {i}"],
                                  "interaction_annotation": [f"the hands touch at the fingertips {i}"]}
    motion = clips["clip_0000"]["motion"]
    assert not contacts.tip_contacts(motion).any()  # no contact before the one placed below
    for f in CONTACT_FRAMES:
        motion[f, 1, INDEX_TIP] = motion[f, 0, THUMB_TIP] + np.float32([0.005, 0.0, 0.0])
    return clips
