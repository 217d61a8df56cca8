"""Choreography grammar: sample a program per clip and lay it out as keyframes and events.

A program (JSON-able dict) holds everything that defines a clip's motion: subject scale,
hand orientation, the two-hand relation, and per hand a list of finger actions and wrist
actions, each placed in time slots (beginning, middle, end thirds of the clip) with its
continuous parameters. `layout` turns it, without randomness, into keyframes (joined by
minimum-jerk ramps), intended contact intervals and ground-truth events.
"""

from __future__ import annotations

import numpy as np

from handx_jax.data.synthetic import poses
from handx_jax.hand import kinematics

FINGER_ACTIONS = ("bend", "straighten", "clench", "tap", "spread_close", "hyperextend", "hold")
WRIST_ACTIONS = ("translate", "rotate", "oscillate")
RELATIONS = ("approach_separate", "palms_together", "tip_to_palm", "tip_tap",
             "swap_vertical", "far_apart", "mirror")
CONTACT_RELATIONS = ("palms_together", "tip_to_palm", "tip_tap")
SLOT_NAMES = ("beginning", "middle", "end")
AXES = "xyz"
ROT_AXES = ("roll", "pitch", "yaw")  # about the hand's x (forearm), y (radial), z (dorsal)
SPEEDS = ("slow", "medium", "fast")

# Hand orientations (hand frame -> world, mirror space for the left hand). World: +x right,
# +y forward (away from the body), +z up.
ORIENTATIONS = {
    "palms_down": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    # palm facing the other hand (-x for the right hand), thumb up, fingers forward
    "palms_facing": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    # fingers pointing at the other hand, palm down
    "pointing": np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]),
}
MIN_GAP_X = 0.24  # wrists closer than this only inside contact relations
PALM_GAP = 0.032  # palms together: distance between the two palm planes (m)
TIP_GAP = 0.014  # fingertip joint to the touched palm plane (m)
TIP_TIP_GAP = 0.012  # fingertip joints touching each other (m)


def _r(x, nd=4):
    return float(round(float(x), nd))


def slot_frames(slots, frames: int) -> tuple[int, int]:
    """Frame window [a, b) of an inclusive slot range."""
    return int(round(slots[0] * frames / 3)), int(round((slots[1] + 1) * frames / 3))


# ----------------------------------------------------------------------------- sampling
def _partition(rng, free_slots: list[int]) -> list[list[int]]:
    """Split consecutive runs of free slots into 1..3 action windows."""
    runs, run = [], []
    for s in free_slots:
        if run and s != run[-1] + 1:
            runs.append(run)
            run = []
        run.append(s)
    if run:
        runs.append(run)
    windows = []
    for run in runs:
        cuts = [i for i in range(1, len(run)) if rng.random() < 0.55]
        edges = [0, *cuts, len(run)]
        windows += [[run[a], run[b - 1]] for a, b in zip(edges[:-1], edges[1:])]
    return windows


def _choose_fingers(rng, allow_thumb=True) -> list[int]:
    groups = [[1], [2], [3], [4], [1, 2], [2, 3], [3, 4], [1, 2, 3, 4], [2, 3, 4], [1, 2, 3]]
    if allow_thumb:
        groups += [[0], [0, 1], [0, 1, 2, 3, 4]]
    return list(groups[rng.integers(len(groups))])


def _finger_action(rng, window, frames: int, state: dict) -> dict:
    a, b = slot_frames(window, frames)
    length = b - a
    kinds = ["bend", "straighten", "clench", "tap", "spread_close", "hyperextend", "hold"]
    weights = np.array([0.18, 0.1, 0.14, 0.2, 0.12, 0.1, 0.16])
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    act = {"action": kind, "slots": list(window)}
    if kind == "bend":
        act["fingers"] = _choose_fingers(rng)
        act["state"] = ["partially_bent", "fully_bent"][rng.integers(2)]
        act["duration"] = int(rng.integers(8, max(9, min(length - 2, 40))))
    elif kind == "straighten":
        act["fingers"] = _choose_fingers(rng)
        act["from_state"] = ["partially_bent", "fully_bent"][rng.integers(2)]
        act["duration"] = int(rng.integers(8, max(9, min(length - 2, 40))))
    elif kind == "clench":
        act["times"] = int(min(rng.integers(1, 4), max(1, length // 14)))
    elif kind == "tap":
        cycle = int(rng.integers(16, 20))
        act["finger"] = int(rng.integers(1, 5))
        act["times"] = int(min(rng.integers(1, 4), max(1, length // cycle)))
        act["cycle"] = cycle
        act["variant"] = int(rng.integers(poses.PINCH_VARIANTS))
    elif kind == "spread_close":
        act["times"] = int(min(rng.integers(1, 3), max(1, length // 14)))
        act["amount"] = _r(rng.uniform(0.6, 1.0), 3)
    elif kind == "hyperextend":
        act["fingers"] = [[1], [4], [1, 4]][rng.integers(3)]
        act["duration"] = int(rng.integers(8, max(9, min(length - 2, 20))))
    else:
        act["pose"] = poses.POSE_NAMES[rng.integers(len(poses.POSE_NAMES))]
        act["finger"] = int(rng.integers(1, 5)) if act["pose"] in ("point", "pinch") else 1
        act["variant"] = int(rng.integers(poses.PINCH_VARIANTS))
    act["u"] = _r(rng.random(), 3)
    act["delay"] = int(rng.integers(0, 4))
    return act


def _wrist_action(rng, window, frames: int, axes: str) -> dict:
    a, b = slot_frames(window, frames)
    length = b - a
    kinds = ["translate", "rotate", "oscillate"]
    kind = kinds[rng.choice(3, p=[0.5, 0.25, 0.25])]
    act = {"action": kind, "slots": list(window)}
    if kind == "translate":
        act["axis"] = axes[rng.integers(len(axes))]
        act["direction"] = int(rng.choice([-1, 1]))
        speeds = ["medium", "fast"] + (["slow"] if length >= 46 else [])
        speed = speeds[rng.integers(len(speeds))]
        if speed == "slow":
            dur, dist = rng.integers(45, length - 1), rng.uniform(0.032, 0.038)
        elif speed == "medium":
            dur = rng.integers(18, max(19, min(length - 1, 36)))
            dist = rng.uniform(0.045, 0.09) * dur / 30.0 / 0.6
        else:
            dur, dist = rng.integers(8, 15), rng.uniform(0.12, 0.18)
        act.update(speed=speed, duration=int(dur), distance=_r(dist))
    elif kind == "rotate":
        act["axis"] = ROT_AXES[rng.integers(3)]
        limit = 70.0 if act["axis"] == "roll" else 35.0
        act["angle"] = _r(rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * limit, 1)
        act["duration"] = int(rng.integers(10, max(11, min(length - 1, 30))))
    else:
        if rng.random() < 0.5:
            act["axis"] = "xyz"[rng.integers(3)]
            act["amplitude"] = _r(rng.uniform(0.02, 0.05))
        else:
            act["axis"] = "roll"
            act["amplitude"] = _r(rng.uniform(20.0, 45.0), 1)
        act["times"] = int(min(rng.integers(2, 4), max(1, length // 12)))
    act["delay"] = int(rng.integers(0, 3))
    return act


def sample_program(rng: np.random.Generator, frames: int) -> dict:
    """Draw one clip's program."""
    relation_type = RELATIONS[rng.integers(len(RELATIONS))]
    rel: dict = {"type": relation_type}
    orientation = ["palms_down", "palms_facing"][rng.integers(2)]
    hand_orient = [orientation, orientation]
    wrist_axes = "xyz"
    busy = [[], []]  # slots where fingers are driven by the relation
    wrist_free = True
    if relation_type in CONTACT_RELATIONS:
        start = int(rng.integers(0, 2))
        end = int(rng.integers(start, 3))
        if end - start < 1 and relation_type == "tip_tap":
            end = min(2, start + 1)
        rel["slots"] = [start, end]
        rel["release"] = bool(rng.random() < 0.5) and end - start >= 1
        if not rel["release"]:
            end = 2  # a contact that is never released lasts to the end of the clip
            rel["slots"] = [start, end]
        busy = [list(range(start, end + 1))] * 2
        wrist_free = False
        if relation_type == "palms_together":
            hand_orient = ["palms_facing", "palms_facing"]
        elif relation_type == "tip_to_palm":
            toucher = int(rng.integers(2))
            rel["hand"] = ["left", "right"][toucher]
            rel["finger"] = int(rng.integers(1, 5))
            hand_orient[toucher] = "pointing"
            hand_orient[1 - toucher] = "palms_facing"
        else:
            rel["finger"] = int(rng.integers(1, 5))
            rel["times"] = int(rng.integers(1, 4))
            hand_orient = ["pointing", "pointing"]
    elif relation_type == "approach_separate":
        rel["variant"] = ["approach", "separate", "approach_then_separate"][rng.integers(3)]
        rel["slots"] = [0, 2] if rel["variant"] == "approach_then_separate" else \
            [[0, 0], [0, 1], [1, 1], [1, 2], [2, 2]][rng.integers(5)]
        rel["mover"] = ["both", "left", "right"][rng.integers(3)]
        wrist_axes = "yz"
    elif relation_type == "swap_vertical":
        rel["slots"] = [[0, 1], [1, 2], [0, 2], [1, 1]][rng.integers(4)]
        rel["left_starts"] = ["above", "below"][rng.integers(2)]
        rel["height"] = _r(rng.uniform(0.05, 0.1))
        wrist_axes = "xy"
    rel["separation"] = _r(rng.uniform(0.45, 0.6) if relation_type == "far_apart"
                           else rng.uniform(0.3, 0.42))
    program = {
        "frames": frames,
        "subject_scale": _r(rng.uniform(0.92, 1.08)),
        "orientation": hand_orient,
        "start_height": _r(rng.uniform(-0.03, 0.03)),
        "relation": rel,
    }
    for h, side in enumerate(("left", "right")):
        if side == "left" and relation_type == "mirror":
            continue
        free = [s for s in range(3) if s not in busy[h]]
        if relation_type == "tip_to_palm":
            free = [s for s in free if s < rel["slots"][0]]  # receiving palm stays open after
        fingers = [_finger_action(rng, w, frames, {}) for w in _partition(rng, free)]
        if fingers and rng.random() < 0.15:
            fingers = fingers[:-1]  # some hands stay still
        wrist = []
        if wrist_free:
            wfree = [s for s in range(3) if rng.random() < 0.6]
            wrist = [_wrist_action(rng, w, frames, wrist_axes) for w in _partition(rng, wfree)]
        program[side] = {
            "start_pose": ["open", "relaxed", "open"][rng.integers(3)],
            "start_u": _r(rng.random(), 3),
            "fingers": fingers,
            "wrist": wrist,
        }
    if relation_type == "mirror":
        program["left"] = _mirror_hand(program["right"])
    return program


def _mirror_hand(hand: dict) -> dict:
    out = {k: v for k, v in hand.items() if k not in ("fingers", "wrist")}
    out["fingers"] = [dict(a) for a in hand["fingers"]]
    out["wrist"] = []
    for act in hand["wrist"]:
        act = dict(act)
        if act["action"] == "translate" and act["axis"] == "x":
            act["direction"] = -act["direction"]
        act["mirrored"] = True
        out["wrist"].append(act)
    return out
