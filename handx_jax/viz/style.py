"""Colours and line sets shared by the renderers (matplotlib) and the Rerun recordings."""

from __future__ import annotations

from handx_jax.hand import skeleton

# One colour per finger (thumb, index, middle, ring, pinky), both hands alike; hands are told
# apart by their wrist colour and their side of the scene (left hand at -x).
FINGER_COLOURS = {"thumb": "#d62728", "index": "#ff7f0e", "middle": "#2ca02c", "ring": "#1f77b4",
                  "pinky": "#9467bd"}
HAND_COLOURS = ("#17becf", "#e377c2")  # wrist / palm outline of the left and right hand
HAND_NAMES = ("left", "right")
CONTACT_COLOUR = "#ffd700"
PALM_OUTLINE = (13, 1, 4, 10, 7)  # thumb CMC, index, middle, ring, pinky MCP: the palm's far edge
# Wrist-to-tip polylines, in skeleton.FINGERS order.
FINGER_CHAINS = tuple((finger, skeleton.CHAINS[finger]) for finger in skeleton.FINGERS)


def rgb(colour: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b) in 0..255."""
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))


def joint_colours(hand: int) -> list[str]:
    """A colour per joint of one hand: the wrist in the hand's colour, the rest by finger."""
    out = [HAND_COLOURS[hand]] * skeleton.NUM_JOINTS
    for finger, chain in FINGER_CHAINS:
        for joint in chain[1:]:
            out[joint] = FINGER_COLOURS[finger]
    return out
