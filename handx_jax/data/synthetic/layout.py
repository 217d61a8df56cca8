"""Lay a program out as keyframes, intended contact intervals and ground-truth events.

No randomness here: the program holds every choice, so a program alone reproduces its
clip (noise, when asked for, has its own seed). Keyframes are integer frames; consecutive
keyframes are joined by minimum-jerk ramps (tracks.py).
"""

from __future__ import annotations

import numpy as np

from handx_jax.data.synthetic import poses
from handx_jax.data.synthetic.program import (MIN_GAP_X, ORIENTATIONS, PALM_GAP, ROT_AXES,
                                              TIP_GAP, TIP_TIP_GAP, slot_frames)
from handx_jax.hand import descriptors, geometry, kinematics

FINGERS = poses.FINGER_NAMES
BASE_Y = 0.30  # wrists this far in front of the body (m)
ROT_LIMITS = np.deg2rad([80.0, 40.0, 40.0])  # roll, pitch, yaw offsets from the orientation
WORKSPACE = 0.25  # |y - BASE_Y| and |z| bounds of wrist travel (m)
FORCE_RAMP = 8  # frames for fingers to reach a relation's pose
APPROACH = 12  # frames for a wrist approach into contact
RELEASE = 10  # frames to separate after a released contact


def speed_label(speed: float, bands: tuple[float, float]) -> str:
    """slow / medium / fast (the annotation's bands, lower case in the ground truth)."""
    return descriptors.speed_label(speed, bands).lower()


FLEX_BANDS = descriptors.FLEX_SPEED  # rad/s
SPACING_BANDS = descriptors.SPACING_SPEED
WRIST_BANDS = descriptors.WRIST_SPEED  # m/s


def finger_state(row: np.ndarray) -> str:
    """State of a finger (MCP, PIP, DIP radians), as `descriptors.finger_state` names it."""
    return descriptors.FLEX_LABELS[int(descriptors.finger_state(row))].lower()


class Track:
    """Keyframes (frame, value vector) of one group of degrees of freedom."""

    def __init__(self, value: np.ndarray):
        self.keys = [(0, np.array(value, dtype=np.float64))]

    @property
    def value(self) -> np.ndarray:
        return self.keys[-1][1]

    @property
    def last_frame(self) -> int:
        return self.keys[-1][0]

    def hold_until(self, frame: int) -> None:
        if frame > self.last_frame:
            self.keys.append((frame, self.value.copy()))

    def move(self, start: int, end: int, value: np.ndarray) -> None:
        """Hold until `start`, then ramp to `value` at `end`."""
        start = max(start, self.last_frame)
        end = max(end, start + 1)
        self.hold_until(start)
        self.keys.append((end, np.array(value, dtype=np.float64)))


class ClipLayout:
    """Keyframes, contacts and events of one clip."""

    def __init__(self, program: dict):
        self.program = program
        self.frames = int(program["frames"])
        self.scale = float(program["subject_scale"])
        self.fingers: list[Track] = []
        self.wrists: list[Track] = []
        self.events = {"left": [], "right": [], "two_hands": []}
        self.intra = []  # (hand, finger 1..4, start, end) inclusive
        self.palm_touch = []  # (hand whose tip touches, finger, start, end)
        self.tip_tip = []  # (left finger, right finger, start, end)
        self.palm_palm = []  # (start, end)
        self.actions = {"left": [], "right": []}  # resolved actions (for captions)


def _hand_rotation(program: dict, h: int) -> np.ndarray:
    return ORIENTATIONS[program["orientation"][h]]


def _start_pose(hand: dict) -> np.ndarray:
    u = hand["start_u"]
    if hand["start_pose"] == "relaxed":
        pose = poses.named_pose("open", u)
        flex, _ = poses.split(pose)
        for f in range(1, 5):
            flex[f] = np.deg2rad(poses.finger_row(8 + 12 * u, 12 + 14 * u))
        flex[0] = np.deg2rad([8 + 8 * u, 10 + 8 * u, 8 + 10 * u])
        return pose
    return poses.named_pose("open", u)


def _staged_move(track: Track, start: int, end: int, target: np.ndarray) -> None:
    """Ramp to `target`, moving the thumb and the fingers one after the other when both
    change: fingers curl before the thumb folds over them, and the thumb leaves before
    they open, so a fingertip does not sweep through the thumb tip on the way."""
    cur = track.value
    start = max(start, track.last_frame)
    thumb_moves = np.abs(target[:3] - cur[:3]).max() > np.deg2rad(5) or \
        abs(target[15] - cur[15]) > np.deg2rad(5)
    fingers_move = np.abs(target[3:15] - cur[3:15]).max() > np.deg2rad(5)
    if not (thumb_moves and fingers_move) or end - start < 4:
        track.move(start, end, target)
        return
    mid = (start + end) // 2
    thumb = [0, 1, 2, 15]
    if target[3:15].sum() > cur[3:15].sum():  # curling: fingers first
        inter = target.copy()
        inter[thumb] = cur[thumb]
    else:  # opening: thumb first
        inter = cur.copy()
        inter[thumb] = target[thumb]
    track.move(start, mid, inter)
    track.move(mid, end, target)


def _finger_event(side_events, flex_a, flex_b, fingers, start, end, extra=None):
    dur_s = max(end - start, 1) / 30.0
    for f in fingers:
        delta = np.abs(flex_b[f] - flex_a[f]).max()
        if delta < np.deg2rad(10) or finger_state(flex_a[f]) == finger_state(flex_b[f]):
            continue
        ev = {"family": "finger_flexing", "finger": FINGERS[f], "start": int(start),
              "end": int(end), "start_des": finger_state(flex_a[f]),
              "end_des": finger_state(flex_b[f]),
              "speed": speed_label(delta / dur_s, FLEX_BANDS)}
        if extra:
            ev.update(extra)
        side_events.append(ev)


def _layout_fingers(lay: ClipLayout, h: int, side: str, hand: dict, before=None) -> None:
    """Lay out the finger actions starting before slot `before` (or after it, when negative)."""
    track = lay.fingers[h]
    events = lay.events[side]
    for act in hand["fingers"]:
        if before is not None:
            keep = act["slots"][0] < before if before >= 0 else act["slots"][0] > -1 - before
            if not keep:
                continue
        a, b = slot_frames(act["slots"], lay.frames)
        a = max(a + act.get("delay", 0), track.last_frame)
        b = min(b, lay.frames) - 1  # last frame of the window
        if b - a < 6:
            continue
        u = act.get("u", 0.5)
        cur = track.value
        kind = act["action"]
        resolved = dict(act, start=int(a), end=int(b))
        if kind in ("bend", "straighten", "hyperextend", "hold"):
            if kind == "bend":
                target = poses.set_state(cur, act["fingers"], act["state"], u)
            elif kind == "straighten":
                bent = poses.set_state(cur, act["fingers"], act["from_state"], u)
                if not np.allclose(bent, cur):  # bend first (quickly) so there is something
                    track.move(a, a + 8, bent)  # to straighten
                    _finger_event(events, poses.split(cur)[0], poses.split(bent)[0], range(5),
                                  a, a + 8)
                    a += 8
                    cur = bent
                target = poses.set_state(cur, act["fingers"], "extended", u)
            elif kind == "hyperextend":
                target = poses.set_state(cur, act["fingers"], "hyperextended", u)
            else:
                target = poses.named_pose(act["pose"], u, act.get("finger", 1),
                                          act.get("variant", 0))
            dur = int(min(act.get("duration", 10), b - a - 1))
            dur = max(dur, 4)
            if kind == "hold" and act["pose"] != "pinch":
                _staged_move(track, a, a + dur, target)
            else:
                track.move(a, a + dur, target)
            track.hold_until(b)
            _finger_event(events, poses.split(cur)[0], poses.split(target)[0], range(5), a,
                          a + dur)
            if kind == "hold":
                events.append({"family": "pose", "pose": act["pose"], "start": int(a + dur),
                               "end": int(b), "constant_des": act["pose"]})
                if act["pose"] == "pinch":
                    lay.intra.append((h, act["finger"], a + dur, b))
                    events.append(_contact_event(act["finger"], a + dur, b))
            if kind in ("bend", "straighten"):
                resolved["speed"] = speed_label(
                    np.abs(target - cur).max() / (dur / 30.0), FLEX_BANDS)
        elif kind == "clench":
            fist = poses.named_pose("fist", u)
            open_ = poses.named_pose("open", u)
            n = act["times"]
            period = (b - a) // n
            ramp = max(4, min(10, period // 2 - 2))
            t = a
            for _ in range(n):
                _staged_move(track, t, t + ramp, fist)
                _staged_move(track, t + period // 2, t + period // 2 + ramp, open_)
                _finger_event(events, poses.split(cur)[0], poses.split(fist)[0], range(1, 5),
                              t, t + ramp, {"repeat": n})
                _finger_event(events, poses.split(fist)[0], poses.split(open_)[0], range(1, 5),
                              t + period // 2, t + period // 2 + ramp, {"repeat": n})
                cur = open_
                t += period
            track.hold_until(b)
        elif kind == "tap":
            f = act["finger"]
            pinch = poses.pinch_pose(cur, f, act["variant"])
            release = cur.copy()
            rf, _ = poses.split(release)
            rf[0] = np.minimum(rf[0], np.deg2rad([10.0, 10.0, 10.0]))
            n, cycle = act["times"], act["cycle"]
            ramp, hold = 5, cycle - 10
            t = a
            taps = 0
            for _ in range(n):
                if t + cycle > b + 1:
                    break
                track.move(t, t + ramp, pinch)
                track.hold_until(t + ramp + hold)
                lay.intra.append((h, f, t + ramp, t + ramp + hold))
                events.append(_contact_event(f, t + ramp, t + ramp + hold, n))
                track.move(t + ramp + hold, t + cycle, release)
                t += cycle
                taps += 1
            resolved["times"] = taps
            track.hold_until(b)
        elif kind == "spread_close":
            amount = act["amount"]
            spread = cur.copy()
            spread[15:] = np.deg2rad([15.0, 18.0, 0.0, -18.0, -18.0]) * amount
            closed = cur.copy()
            closed[15:] = np.deg2rad([-10.0, -4.0, 0.0, 4.0, 8.0])
            n = act["times"]
            period = (b - a) // n
            ramp = max(4, min(10, period // 2 - 2))
            t = a
            for _ in range(n):
                track.move(t, t + ramp, spread)
                track.move(t + period // 2, t + period // 2 + ramp, closed)
                for s0, s1, d0, d1 in ((t, t + ramp, "closed", "open"),
                                       (t + period // 2, t + period // 2 + ramp, "open",
                                        "closed")):
                    events.append({"family": "finger_spacing", "start": int(s0),
                                   "end": int(s1), "start_des": d0, "end_des": d1,
                                   "fingers": ["index", "middle", "ring"], "repeat": n})
                t += period
            track.hold_until(b)
        lay.actions[side].append(resolved)


def _contact_event(finger, start, end, repeat=1):
    return {"family": "finger_tip_contact", "fingers": ["thumb", FINGERS[finger]],
            "start": int(start), "end": int(end), "constant_des": "contact",
            "repeat": int(repeat)}


def _clamp_wrist(vec: np.ndarray, h: int) -> np.ndarray:
    out = vec.copy()
    half = MIN_GAP_X / 2
    out[0] = min(out[0], -half) if h == 0 else max(out[0], half)
    out[0] = float(np.clip(out[0], -0.45, 0.45))
    out[1] = float(np.clip(out[1], BASE_Y - WORKSPACE, BASE_Y + WORKSPACE))
    out[2] = float(np.clip(out[2], -WORKSPACE, WORKSPACE))
    out[3:] = np.clip(out[3:], -ROT_LIMITS, ROT_LIMITS)
    return out


AXIS_WORDS = {"x": ("left", "right"), "y": ("backward", "forward"), "z": ("down", "up")}


def _layout_wrist(lay: ClipLayout, h: int, side: str, hand: dict) -> None:
    track = lay.wrists[h]
    for act in hand["wrist"]:
        a, b = slot_frames(act["slots"], lay.frames)
        a = max(a + act.get("delay", 0), track.last_frame)
        b = min(b, lay.frames) - 1
        if b - a < 6:
            continue
        cur = track.value
        kind = act["action"]
        resolved = dict(act, start=int(a), end=int(b))
        if kind == "translate":
            axis = "xyz".index(act["axis"])
            target = cur.copy()
            target[axis] += act["direction"] * act["distance"]
            target = _clamp_wrist(target, h)
            dist = abs(target[axis] - cur[axis])
            dur = int(min(act["duration"], b - a))
            if dist < 0.03:
                continue  # blocked by the workspace: no motion, no event
            track.move(a, a + dur, target)
            speed = speed_label(dist / (dur / 30.0), WRIST_BANDS)
            word = AXIS_WORDS[act["axis"]][int(target[axis] > cur[axis])]
            resolved.update(distance=round(float(dist), 4), speed=speed, word=word,
                            end=int(a + dur))
            lay.events[side].append({"family": "wrist_trajectory", "axis": act["axis"],
                                     "direction": word, "start": int(a), "end": int(a + dur),
                                     "speed": speed, "distance": round(float(dist), 4)})
        elif kind == "rotate":
            axis = 3 + ROT_AXES.index(act["axis"])
            target = cur.copy()
            target[axis] += np.deg2rad(act["angle"])
            target = _clamp_wrist(target, h)
            dur = int(min(act["duration"], b - a))
            if abs(target[axis] - cur[axis]) < np.deg2rad(10):
                continue
            track.move(a, a + dur, target)
            resolved.update(angle=round(float(np.rad2deg(target[axis] - cur[axis])), 1),
                            end=int(a + dur))
            lay.events[side].append({"family": "wrist_rotation", "axis": act["axis"],
                                     "start": int(a), "end": int(a + dur),
                                     "angle_deg": resolved["angle"]})
        else:
            n = act["times"]
            if act["axis"] == "roll":
                axis, amp = 3, np.deg2rad(act["amplitude"])
            else:
                axis, amp = "xyz".index(act["axis"]), act["amplitude"]
                if axis == 0:  # keep the inner excursion clear of the other hand
                    room = abs(cur[0]) - MIN_GAP_X / 2
                    amp = min(amp, room)
                if amp < 0.015:
                    continue
            period = (b - a) // n
            quarter = max(3, period // 4)
            t = a
            sign = -1.0 if (h == 0 and axis == 0) else 1.0  # left hand swings outwards first
            for _ in range(n):
                for k, frac in enumerate((1.0, -1.0)):
                    v = cur.copy()
                    v[axis] += sign * frac * amp
                    track.move(t + (2 * k) * quarter, t + (2 * k + 1) * quarter, v)
                track.move(t + 3 * quarter, t + 4 * quarter, cur)
                t += 4 * quarter
            resolved.update(end=int(t))
            if axis < 3:
                lay.events[side].append({"family": "wrist_trajectory", "axis": act["axis"],
                                         "direction": "back and forth", "start": int(a),
                                         "end": int(t), "repeat": n,
                                         "speed": speed_label(4 * amp / (4 * quarter / 30.0),
                                                              WRIST_BANDS)})
            else:
                lay.events[side].append({"family": "wrist_rotation", "axis": "roll",
                                         "start": int(a), "end": int(t), "repeat": n})
        track.hold_until(b)
        lay.actions[side].append(resolved)


def _local_fk(pose: np.ndarray, h: int, rot: np.ndarray, pos: np.ndarray, scale: float):
    """World joints (21, 3) of one hand; `pos` is the world wrist position."""
    flex, abd = poses.split(pose)
    mirror = np.array([-1.0, 1.0, 1.0]) if h == 0 else np.ones(3)
    return kinematics.forward_kinematics(kinematics.HandParams(
        flex, abd, rot, pos * mirror, np.float64(scale), np.bool_(h == 0)))


def layout(program: dict) -> ClipLayout:
    """Resolve a program into keyframes, contact intervals and events."""
    lay = ClipLayout(program)
    rel = program["relation"]
    kind = rel["type"]
    sep = rel["separation"]
    z0 = program["start_height"]
    for h, side in enumerate(("left", "right")):
        lay.fingers.append(Track(_start_pose(program[side])))
        x = (-1 if h == 0 else 1) * sep / 2
        z = z0
        if kind == "swap_vertical":
            up = (rel["left_starts"] == "above") == (h == 0)
            z = z0 + (rel["height"] if up else -rel["height"])
        lay.wrists.append(Track(np.array([x, BASE_Y, z, 0.0, 0.0, 0.0])))
    rots = [_hand_rotation(program, h) for h in range(2)]

    contact = kind in ("palms_together", "tip_to_palm", "tip_tap")
    for h, side in enumerate(("left", "right")):
        _layout_fingers(lay, h, side, program[side], rel["slots"][0] if contact else None)
        _layout_wrist(lay, h, side, program[side])

    two = lay.events["two_hands"]
    if contact:
        _layout_contact_relation(lay, rel, rots)
        for h, side in enumerate(("left", "right")):  # finger actions after the contact
            _layout_fingers(lay, h, side, program[side], -1 - rel["slots"][1])
    elif kind == "approach_separate":
        a, b = slot_frames(rel["slots"], lay.frames)
        b -= 1
        far, near = sep + 0.1, MIN_GAP_X + 0.01
        movers = {"both": (0, 1), "left": (0, ), "right": (1, )}[rel["mover"]]
        plan = {"approach": [(a, far), (b, near)], "separate": [(a, near), (b, far)],
                "approach_then_separate": [(a, far), ((a + b) // 2 - 4, near),
                                           ((a + b) // 2 + 4, near), (b, far)]}[rel["variant"]]
        # Starting separation: the hands not moving stay where the plan puts them.
        for h in range(2):
            track = lay.wrists[h]
            sign = -1 if h == 0 else 1
            share = 0.5 if len(movers) == 2 else (1.0 if h in movers else 0.0)
            for k, (t, d) in enumerate(plan):
                # Each hand's x: half the closest separation plus its share of the change.
                x = sign * (MIN_GAP_X / 2 + 0.005 + share * (d - near))
                if k == 0:
                    for key in track.keys:
                        key[1][0] = x
                else:
                    _insert_x(track, plan[k - 1][0], t, x)
        states = {"approach": ("far", "near"), "separate": ("near", "far"),
                  "approach_then_separate": ("far", "far")}[rel["variant"]]
        two.append({"family": "palm_palm_distance", "start": int(a), "end": int(b),
                    "start_des": states[0], "end_des": states[1], "variant": rel["variant"],
                    "mover": rel["mover"]})
    elif kind == "swap_vertical":
        a, b = slot_frames(rel["slots"], lay.frames)
        b -= 1
        for h in range(2):
            track = lay.wrists[h]
            z = track.keys[0][1][2]
            _insert_axis(track, a, b, 2, 2 * z0 - z)
        first = "above" if rel["left_starts"] == "above" else "below"
        second = "below" if first == "above" else "above"
        two.append({"family": "palm_palm_relative_position", "axis": "z", "start": int(a),
                    "end": int(b), "start_des": f"left {first}", "end_des": f"left {second}"})
    elif kind == "far_apart":
        two.append({"family": "palm_palm_distance", "start": 0, "end": lay.frames - 1,
                    "constant_des": "far"})
    elif kind == "mirror":
        two.append({"family": "mirror", "start": 0, "end": lay.frames - 1,
                    "constant_des": "mirrored"})
    if kind in ("far_apart", "mirror", "approach_separate", "palms_together", "tip_tap"):
        two.append({"family": "palm_palm_relative_position", "axis": "x", "start": 0,
                    "end": lay.frames - 1, "constant_des": "left hand on the left"})
    return lay


def _insert_axis(track: Track, a: int, b: int, axis: int, value: float) -> None:
    """Ramp one wrist coordinate to `value` over [a, b] on top of the existing keyframes."""
    old = track.keys
    frames = sorted({k for k, _ in old} | {a, b})
    vals = _eval_keys(old, frames)
    base = _eval_keys(old, [a])[0][axis]
    out = []
    for t, v in zip(frames, vals):
        v = v.copy()
        if t >= b:
            v[axis] = value + (v[axis] - base)
        elif t > a:
            s = (t - a) / (b - a)
            v[axis] = v[axis] + (value - base) * (10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5)
        out.append((t, v))
    track.keys = out


def _insert_x(track: Track, a: int, b: int, x: float) -> None:
    """Ramp the wrist x to `x` over [a, b] (then hold it)."""
    frames = sorted({k for k, _ in track.keys} | {a, b})
    vals = _eval_keys(track.keys, frames)
    x0 = _eval_keys(track.keys, [a])[0][0]
    out = []
    for t, v in zip(frames, vals):
        v = v.copy()
        if t >= b:
            v[0] = x
        elif t > a:
            s = (t - a) / (b - a)
            v[0] = x0 + (x - x0) * (10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5)
        out.append((t, v))
    track.keys = out


def _eval_keys(keys, frames) -> list[np.ndarray]:
    """Values of a keyframe list at given frames (min-jerk between keys)."""
    times = np.array([k for k, _ in keys], dtype=np.float64)
    vals = np.stack([v for _, v in keys])
    out = []
    for t in frames:
        i = int(np.searchsorted(times, t, side="right")) - 1
        if i < 0:
            out.append(vals[0].copy())
        elif i >= len(times) - 1:
            out.append(vals[-1].copy())
        else:
            s = (t - times[i]) / max(times[i + 1] - times[i], 1e-9)
            w = 10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5
            out.append(vals[i] + (vals[i + 1] - vals[i]) * w)
    return out


def _layout_contact_relation(lay: ClipLayout, rel: dict, rots) -> None:
    kind = rel["type"]
    a, b = slot_frames(rel["slots"], lay.frames)
    b = min(b, lay.frames) - 1
    scale = lay.scale
    two = lay.events["two_hands"]
    if kind == "palms_together":
        forced = [poses.named_pose("flat", 0.3)] * 2
    elif kind == "tip_to_palm":
        toucher = 0 if rel["hand"] == "left" else 1
        forced = [None, None]
        forced[toucher] = poses.named_pose("point", 0.5, rel["finger"])
        forced[1 - toucher] = poses.named_pose("flat", 0.3)
    else:
        forced = [poses.named_pose("point", 0.5, rel["finger"])] * 2
    for h, side in enumerate(("left", "right")):
        before = lay.fingers[h].value
        _staged_move(lay.fingers[h], a, a + FORCE_RAMP, forced[h])
        pose = "flat" if kind == "palms_together" or (kind == "tip_to_palm" and h != toucher) \
            else "point"
        lay.actions[side].append({"action": "relation_pose", "pose": pose,
                                  "finger": rel["finger"] if pose == "point" else 0,
                                  "start": int(a), "end": int(b)})
        _finger_event(lay.events[side], poses.split(before)[0], poses.split(forced[h])[0],
                      range(5), a, a + FORCE_RAMP)
    start = [lay.wrists[h].value.copy() for h in range(2)]
    contact_at = a + APPROACH
    end = b - RELEASE if rel.get("release") else b
    if kind == "palms_together":
        for h in range(2):
            target = start[h].copy()
            target[0] = (-1 if h == 0 else 1) * PALM_GAP / 2
            target[2] = 0.5 * (start[0][2] + start[1][2])
            target[1] = 0.5 * (start[0][1] + start[1][1])
            lay.wrists[h].move(a, contact_at, target)
            lay.wrists[h].hold_until(end)
            if rel.get("release"):
                lay.wrists[h].move(end, b, start[h])
        lay.palm_palm.append((contact_at, end))
        two.append({"family": "palm_palm_distance", "start": int(contact_at), "end": int(end),
                    "constant_des": "contact"})
        # Pressed palms bring the corresponding fingertips together too (not the thumbs,
        # which lie in the palm planes, 3 cm apart).
        for f in range(1, 5):
            lay.tip_tip.append((f, f, contact_at, end))
        two.append({"family": "finger_tip_contact", "fingers": list(FINGERS[1:]),
                    "start": int(contact_at), "end": int(end), "repeat": 1,
                    "constant_des": "contact"})
    elif kind == "tip_to_palm":
        receiver = 1 - toucher
        f = rel["finger"]
        rec = _local_fk(forced[receiver], receiver, rots[receiver], start[receiver][:3], scale)
        centre = geometry.palm_points(rec).mean(axis=0)
        normal = np.array([1.0, 0.0, 0.0]) if receiver == 0 else np.array([-1.0, 0.0, 0.0])
        tip = _local_fk(forced[toucher], toucher, rots[toucher], np.zeros(3), scale)[16 + f]
        contact = centre + normal * TIP_GAP - tip
        begin = contact + normal * max(0.15, abs(start[toucher][0] - contact[0]))
        track = lay.wrists[toucher]
        first = np.concatenate([begin, np.zeros(3)])
        track.keys = [(k, first.copy()) for k, _ in track.keys[:1]]
        track.move(a, contact_at, np.concatenate([contact, np.zeros(3)]))
        track.hold_until(end)
        if rel.get("release"):
            track.move(end, b, first)
        lay.palm_touch.append((toucher, f, contact_at, end))
        two.append({"family": "finger_palm_distance", "hand": rel["hand"],
                    "finger": FINGERS[f], "start": int(contact_at), "end": int(end),
                    "constant_des": "contact"})
    else:
        f = rel["finger"]
        tip = _local_fk(forced[1], 1, rots[1], np.zeros(3), scale)[16 + f]
        contact_x = TIP_TIP_GAP / 2 - tip[0]
        y, z = 0.5 * (start[0][1] + start[1][1]), 0.5 * (start[0][2] + start[1][2])
        far_x = contact_x + 0.12
        retreat_x = contact_x + 0.03
        hold, gap = 7, 6
        times = rel["times"]
        while times > 1 and APPROACH + times * hold + (times - 1) * 2 * gap > end - a:
            times -= 1
        taps = []
        for h in range(2):
            sign = -1 if h == 0 else 1
            track = lay.wrists[h]
            first = np.array([sign * far_x, y, z, 0.0, 0.0, 0.0])
            track.keys = [(0, first.copy())]
            cur = first.copy()
            t = a
            for k in range(times):
                target = cur.copy()
                target[0] = sign * contact_x
                track.move(t, t + (APPROACH if k == 0 else gap), target)
                t = track.last_frame
                t_end = t + hold if k < times - 1 else max(end, t + hold)
                track.hold_until(t_end)
                if h == 0:
                    taps.append((t, t_end))
                if k < times - 1:
                    back = target.copy()
                    back[0] = sign * retreat_x
                    track.move(t_end, t_end + gap, back)
                    t = track.last_frame
            if rel.get("release"):
                track.move(track.last_frame, b, first)
        for t0, t1 in taps:
            lay.tip_tip.append((f, f, t0, t1))
        two.append({"family": "finger_tip_contact", "fingers": [FINGERS[f], FINGERS[f]],
                    "start": int(taps[0][0]), "end": int(taps[-1][1]), "repeat": len(taps),
                    "constant_des": "contact"})
        rel["times_done"] = len(taps)
