"""HandX's descriptor thresholds, state and speed labels, and segmentation parameters.

One table for every stage: the annotation's event segmentation, the synthetic ground
truth, the evaluation's contact metrics and the conditioning's contact keyframes read their
numbers and labels from here. Values follow the HandX paper's Table A and its released
code; where the two disagree the choice is named below.

States are bands [edge_k, edge_k+1) (a value on an edge belongs to the band above, as in
HandX's interval lookup); speeds are bands of the absolute mean velocity over an event.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEG = np.pi / 180.0
FPS = 30
MIN_LEN = 6  # frames: shortest graded event (flexion, spacing, distances)
MIN_LEN_SHORT = 4  # frames: wrist trajectory and palm relative position
SIGN_CONSISTENCY = 0.8  # share of an event's velocities that must agree in sign
SPEED_LABELS = ("Slow", "Medium", "Fast")
# Frame-to-frame changes at most this large (radians or metres) count as zero velocity in
# the sign test: below it a sign is float rounding (a float32 and a float64 measurement of
# the same held pose disagree on it), not motion. HandX's code has no such floor.
STILL_STEP = 1e-5

# Flexion: HandX's code has an empty hyperextension interval; the paper's < -20 deg is used.
FLEX_EDGES = (-20 * DEG, np.pi / 6, np.pi / 3)
FLEX_LABELS = ("Hyperextended", "Fully extended", "Partially bent", "Fully bent")
FLEX_SPEED = (0.15, 1.3)  # rad/s
FLEX_DELTA = np.pi / 6  # a flexion event changes by at least 30 degrees
SPACING_EDGES = (np.pi / 9,)  # 20 degrees
SPACING_LABELS = ("Closed", "Open")
SPACING_SPEED = (0.03, 1.3)  # rad/s
SPACING_DELTA = np.pi / 10  # 18 degrees
TIP_CONTACT = 0.02  # m: fingertip on fingertip (within a hand and across hands), <=
# Verbs a caption uses for a contact: the rules captions word contacts with them, and
# prompts are read for stated contacts by them.
CONTACT_VERBS = ("touch", "contact", "meet", "tap", "press", "pinch")
# Frames a fingertip contact must last. HandX keeps single frames; on clips with known
# contacts those are fingertips sweeping past each other (half the false contacts).
CONTACT_MIN_FRAMES = 2
TIP_PALM_EDGES = (0.025, 0.035)  # m
TIP_PALM_LABELS = ("Contact", "Near", "Far")
TIP_PALM_DELTA = 0.03  # m
PALM_EDGES = (0.04, 0.08, 0.12)  # m
PALM_LABELS = ("Contact", "Near", "Medium", "Far")
PALM_DELTA = 0.05  # m
DIST_SPEED = (0.025, 0.07)  # m/s (fingertip-palm, palm-palm, relative position)
ALIGN = 0.02  # m: palm relative position within +-ALIGN is aligned
RELATIVE_DELTA = 0.05  # m
WRIST_DELTA = 0.03  # m: a wrist moves when it travels at least this far
WRIST_SPEED = (0.03, 0.15)  # m/s

# Evaluation contacts (HandX's evaluation code): strict thresholds.
INTRA_CONTACT_M = 0.02  # thumb tip vs another tip of the same hand
INTER_CONTACT_M = 0.025  # fingertip vs the closest point of the other palm
PALM_PALM_CONTACT_M = PALM_EDGES[0]

HANDS = ("left", "right")
RELATIVE_AXES = (("left-right", "RIGHT", "LEFT"), ("front-back", "FRONT", "BACK"),
                 ("up-down", "UP", "DOWN"))
WRIST_AXES = (("left-right", "left-to-right", "right-to-left"),
              ("front-back", "back-to-front", "front-to-back"),
              ("down-up", "down-to-up", "up-to-down"))


def relative_labels(axis: int) -> tuple[str, str, str]:
    """HandX's state labels of the palm relative position along `axis` (negative, aligned,
    positive), as its released code writes them."""
    _, pos, neg = RELATIVE_AXES[axis]
    return (f"right hand is to the {neg} of the left hand.",
            "right hand is ALIGNED with the left hand.",
            f"right hand is to the {pos} of the left hand.")


@dataclasses.dataclass(frozen=True)
class Graded:
    """Segmentation parameters of one graded descriptor family."""

    edges: tuple
    labels: tuple
    speed: tuple
    delta: float  # smallest change an event must span
    min_len: int = MIN_LEN
    constant: bool = True  # one whole-clip event of the mean's state when nothing changes


FLEXION = Graded(FLEX_EDGES, FLEX_LABELS, FLEX_SPEED, FLEX_DELTA)
SPACING = Graded(SPACING_EDGES, SPACING_LABELS, SPACING_SPEED, SPACING_DELTA)
TIP_PALM = Graded(TIP_PALM_EDGES, TIP_PALM_LABELS, DIST_SPEED, TIP_PALM_DELTA)
PALM_PALM = Graded(PALM_EDGES, PALM_LABELS, DIST_SPEED, PALM_DELTA)
WRIST = Graded((), (), WRIST_SPEED, WRIST_DELTA, MIN_LEN_SHORT, constant=False)


def relative(axis: int) -> Graded:
    return Graded((-ALIGN, ALIGN), relative_labels(axis), DIST_SPEED, RELATIVE_DELTA,
                  MIN_LEN_SHORT)


def state_index(values, edges) -> np.ndarray:
    """Band index of every value: band k is [edges[k-1], edges[k])."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")


def speed_index(speed, bands=FLEX_SPEED) -> np.ndarray:
    """0 / 1 / 2 (slow / medium / fast) of absolute speeds against (slow_below, medium_below)."""
    return np.searchsorted(np.asarray(bands, dtype=np.float64), np.abs(speed), side="right")


def speed_label(speed: float, bands: tuple[float, float]) -> str:
    """Slow / Medium / Fast of one speed against (slow_below, medium_below)."""
    return SPEED_LABELS[int(speed_index(speed, bands))]


def finger_state(flexion) -> np.ndarray:
    """State index (...,) of fingers from their joint angles (..., 3) (radians, MCP first).

    The finger is hyperextended when its MCP is; otherwise its state is that of its most
    bent joint. Used by the synthetic ground truth and the accuracy measurements alike.
    """
    flexion = np.asarray(flexion, dtype=np.float64)
    bent = state_index(flexion.max(axis=-1), FLEX_EDGES)
    return np.where(flexion[..., 0] < FLEX_EDGES[0], 0, np.maximum(bent, 1))
