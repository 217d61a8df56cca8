"""Event segmentation of motion features into HandX's per-clip JSON (DESIGN section 6).

An event is `{start, end, start_des, end_des, v_des}` (a state change at a speed) or
`{start, end, constant_des}` (a held state); wrist trajectory events are
`{start, end, direction, v_des}` as in HandX. Frames are `[start, end)` (end exclusive,
so a state held for a whole 60-frame clip is `0..60`).

Rules: an event lasts at least 6 frames (4 for wrist and relative position; contact runs
first have gaps of <= 2 frames closed); a moving
event needs >= 80 % of its frame-to-frame velocities of one sign; contacts are segmented
first and take their frames away from the proximity events of the same pair.

States and run boundaries are computed for all signals of a clip at once with numpy;
Python only walks the (few) runs.
"""

from __future__ import annotations

import numpy as np

from handx_jax.annotate import features as F
from handx_jax.hand import skeleton

FPS = skeleton.FPS
MIN_LEN = 6
MIN_LEN_SHORT = 4  # wrist trajectory and palm relative position
SIGN_CONSISTENCY = 0.8
CONTACT_MIN_LEN = MIN_LEN  # contacts follow the general 6-frame minimum
CONTACT_GAP = 2  # contact runs separated by <= this many frames are one contact

DEG = np.pi / 180.0
FLEX_EDGES = (-20 * DEG, 30 * DEG, 60 * DEG)
FLEX_LABELS = ("Hyperextended", "Fully extended", "Partially bent", "Fully bent")
FLEX_SPEED = (0.15, 1.3)  # rad/s
SPACING_EDGES = (20 * DEG,)
SPACING_LABELS = ("Closed", "Open")
SPACING_SPEED = (0.03, 1.3)  # rad/s
TIP_CONTACT = 0.02  # m
TIP_PALM_EDGES = (0.025, 0.035)
TIP_PALM_LABELS = ("Contact", "Near", "Far")
PALM_EDGES = (0.04, 0.08, 0.12)
PALM_LABELS = ("Contact", "Near", "Medium", "Far")
DIST_SPEED = (0.025, 0.07)  # m/s
ALIGN = 0.02  # m
WRIST_MOVE = 0.03  # m
WRIST_SPEED = (0.03, 0.15)  # m/s
SPEED_LABELS = ("Slow", "Medium", "Fast")
VELOCITY_EPS = {"angle": 0.02, "distance": 0.002, "wrist": 0.01}  # sign dead band per s
WRIST_SMOOTH = 5  # frames of the centred moving average the wrist's direction is read from

HANDS = ("left", "right")
HAND_KEYS = ("finger_flexing", "finger_spacing", "finger_tip_contact", "wrist_trajectory")
RELATION_KEYS = ("finger_tip_contact", "finger_palm_distance", "palm_palm_distance",
                 "palm_palm_relative_position")
WRIST_AXES = (("left-right", "left-to-right", "right-to-left"),
              ("front-back", "back-to-front", "front-to-back"),
              ("down-up", "down-to-up", "up-to-down"))
RELATIVE_AXES = (("left-right", "RIGHT", "LEFT"), ("front-back", "FRONT", "BACK"),
                 ("up-down", "UP", "DOWN"))
# Joints reported under finger_flexing, as HandX keys them (the thumb CMC is not).
FLEX_REPORTED = tuple((f_i, j_i, f"{finger}_{name}")
                      for f_i, finger in enumerate(F.FLEX_FINGERS)
                      for j_i, name in enumerate(F.FLEX_JOINT_NAMES[f_i])
                      if not (finger == "thumb" and name == "cmc"))


def speed_label(speed: float, bands: tuple[float, float]) -> str:
    """Slow / Medium / Fast for a speed against (slow_below, medium_below)."""
    return SPEED_LABELS[int(np.searchsorted(bands, speed, side="right"))]


def runs(mask_or_codes: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """Run-length encode each row of an integer array (S, T): per row [(value, start, end)]."""
    codes = np.asarray(mask_or_codes)
    rows, length = codes.shape
    change = np.ones((rows, length), dtype=bool)
    change[:, 1:] = codes[:, 1:] != codes[:, :-1]
    r_idx, starts = np.nonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    last = np.ones(len(starts), dtype=bool)
    last[:-1] = r_idx[1:] != r_idx[:-1]
    ends[last] = length
    values = codes[r_idx, starts]
    out: list[list[tuple[int, int, int]]] = [[] for _ in range(rows)]
    for r, v, s, e in zip(r_idx.tolist(), values.tolist(), starts.tolist(), ends.tolist()):
        out[r].append((v, s, e))
    return out


def close_gaps(mask: np.ndarray, gap: int) -> np.ndarray:
    """Fill False runs of length <= gap that lie between True frames (per row of (S, T))."""
    mask = np.asarray(mask, dtype=bool)
    if gap <= 0:
        return mask
    out = mask.copy()
    for r, row_runs in enumerate(runs(mask.astype(np.int8))):
        for k, (v, s, e) in enumerate(row_runs):
            if v == 0 and 0 < k < len(row_runs) - 1 and e - s <= gap:
                out[r, s:e] = True
    return out


def contact_intervals(mask: np.ndarray, min_len: int = CONTACT_MIN_LEN,
                      gap: int = CONTACT_GAP) -> list[list[tuple[int, int]]]:
    """Contact intervals [(start, end)] per row of a boolean (S, T) mask."""
    closed = close_gaps(mask, gap)
    return [[(s, e) for v, s, e in row if v == 1 and e - s >= min_len]
            for row in runs(closed.astype(np.int8))]


def moving_segments(values: np.ndarray, eps: float, min_len: int,
                    consistency: float = SIGN_CONSISTENCY) -> list[list[tuple[int, int, int]]]:
    """Monotone stretches per row of (S, T): [(sign, start_frame, end_frame_exclusive)].

    Velocity runs of one sign are merged across short gaps while >= `consistency` of the
    merged velocities keep that sign; stretches shorter than `min_len` frames are dropped
    and overlaps resolved in favour of the longer stretch.
    """
    vel = np.diff(values, axis=-1) * FPS
    sign = np.where(vel > eps, 1, np.where(vel < -eps, -1, 0)).astype(np.int8)
    out = []
    for row_runs in runs(sign):
        candidates = []
        for target in (1, -1):
            cur = None  # [start, end, count]
            for v, s, e in row_runs:
                if v != target:
                    continue
                if cur is not None and (cur[2] + e - s) >= consistency * (e - cur[0]):
                    cur = [cur[0], e, cur[2] + e - s]
                    continue
                if cur is not None:
                    candidates.append((target, cur[0], cur[1]))
                cur = [s, e, e - s]
            if cur is not None:
                candidates.append((target, cur[0], cur[1]))
        # velocity run [a, b) spans frames a..b, i.e. [a, b + 1)
        candidates = [(sg, a, b + 1) for sg, a, b in candidates if b + 1 - a >= min_len]
        candidates.sort(key=lambda c: (-(c[2] - c[1]), c[1]))
        kept: list[tuple[int, int, int]] = []
        for c in candidates:
            if all(c[2] <= k[1] + 1 or c[1] >= k[2] - 1 for k in kept):
                kept.append(c)
        out.append(sorted(kept, key=lambda c: c[1]))
    return out


def graded_events(values: np.ndarray, edges, labels, speed_bands, eps: float,
                  min_len: int = MIN_LEN, blocked: np.ndarray | None = None) -> list[list[dict]]:
    """Events per row of a graded signal (S, T): state changes and held states.

    A monotone stretch whose start and end states differ is a moving event (speed from its
    mean absolute velocity); frames outside moving events whose state is held for
    `min_len` frames form constant events. `blocked` (S, T) frames (e.g. contacts reported
    elsewhere) take part in neither.
    """
    values = np.asarray(values, dtype=np.float64)
    states = np.searchsorted(np.asarray(edges), values, side="right")
    blocked = np.zeros(values.shape, bool) if blocked is None else blocked
    vel = np.abs(np.diff(values, axis=-1)) * FPS
    out = []
    moving = moving_segments(values, eps, min_len)
    for r in range(values.shape[0]):
        events, covered = [], blocked[r].copy()
        for _, a, b in moving[r]:
            if covered[a:b].any():
                # keep the part before the first blocked frame, if long enough
                free = np.flatnonzero(covered[a:b])
                b = a + int(free[0])
                if b - a < min_len:
                    continue
            s0, s1 = int(states[r, a]), int(states[r, b - 1])
            if s0 == s1:
                continue
            events.append({"start": a, "end": b, "start_des": labels[s0], "end_des": labels[s1],
                           "v_des": speed_label(float(vel[r, a:b - 1].mean()), speed_bands)})
            covered[a:b] = True
        codes = np.where(covered, -1, states[r])[None]
        for v, s, e in runs(codes)[0]:
            if v >= 0 and e - s >= min_len:
                events.append({"start": s, "end": e, "constant_des": labels[v]})
        out.append(sorted(events, key=lambda ev: ev["start"]))
    return out


def finger_state(flexion: np.ndarray) -> np.ndarray:
    """Per-finger state index (..., 5) from joint angles (..., 5, 3): the mean angle's band."""
    return np.searchsorted(np.asarray(FLEX_EDGES), flexion.mean(axis=-1), side="right")


def _contact_events(intervals) -> list[dict]:
    return [{"start": s, "end": e, "constant_des": "Contact"} for s, e in intervals]


def _blocked_from(intervals, length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    for s, e in intervals:
        mask[s:e] = True
    return mask


def clip_events(features: dict[str, np.ndarray], i: int) -> dict:
    """The HandX event JSON of clip `i` of a batch of features (`extract_features`)."""
    flex = features["flexion"][i]  # (T, 2, 5, 3)
    frames = flex.shape[0]
    result: dict = {"frame_count": int(frames)}
    # --- per hand
    spacing = features["spacing"][i]
    intra = features["intra_tip_dist"][i]
    wrist = features["wrist"][i]
    flex_rows = np.stack([flex[:, h, f, j] for h in range(2) for f, j, _ in FLEX_REPORTED])
    flex_ev = graded_events(flex_rows, FLEX_EDGES, FLEX_LABELS, FLEX_SPEED,
                            VELOCITY_EPS["angle"])
    spacing_ev = graded_events(spacing.transpose(1, 2, 0).reshape(-1, frames), SPACING_EDGES,
                               SPACING_LABELS, SPACING_SPEED, VELOCITY_EPS["angle"])
    intra_iv = contact_intervals(intra.transpose(1, 2, 0).reshape(-1, frames) < TIP_CONTACT)
    wrist_ev = wrist_events(wrist.transpose(1, 2, 0).reshape(-1, frames))
    n_flex = len(FLEX_REPORTED)
    for h, hand in enumerate(HANDS):
        hand_ev = {k: {} for k in HAND_KEYS}
        for k, (_, _, name) in enumerate(FLEX_REPORTED):
            if flex_ev[h * n_flex + k]:
                hand_ev["finger_flexing"][name] = flex_ev[h * n_flex + k]
        for k, (a, b) in enumerate(F.SPACING_PAIRS):
            if spacing_ev[h * 3 + k]:
                hand_ev["finger_spacing"][f"{a}, {b}"] = spacing_ev[h * 3 + k]
        for k, tip in enumerate(F.INTRA_TIPS):
            if intra_iv[h * 4 + k]:
                hand_ev["finger_tip_contact"][f"{tip}_tip, thumb_tip"] = _contact_events(
                    intra_iv[h * 4 + k])
        for k, (axis, _, _) in enumerate(WRIST_AXES):
            if wrist_ev[h * 3 + k]:
                hand_ev["wrist_trajectory"][axis] = wrist_ev[h * 3 + k]
        result[f"{hand}_hand_events"] = hand_ev
    # --- between hands
    rel = {k: {} for k in RELATION_KEYS}
    inter = features["inter_tip_dist"][i].reshape(frames, 25).T  # (25, T) left i, right j
    for k, iv in enumerate(contact_intervals(inter < TIP_CONTACT)):
        if iv:
            a, b = F.FLEX_FINGERS[k // 5], F.FLEX_FINGERS[k % 5]
            rel["finger_tip_contact"][f"left_{a}_tip, right_{b}_tip"] = _contact_events(iv)
    tip_palm = features["tip_palm_dist"][i].transpose(1, 2, 0).reshape(10, frames)
    tp_contact = contact_intervals(tip_palm < TIP_PALM_EDGES[0])
    blocked = np.stack([_blocked_from(iv, frames) for iv in tp_contact])
    tp_ev = graded_events(tip_palm, TIP_PALM_EDGES, TIP_PALM_LABELS, DIST_SPEED,
                          VELOCITY_EPS["distance"], blocked=blocked)
    for k in range(10):
        hand, other = HANDS[k // 5], HANDS[1 - k // 5]
        events = sorted(_contact_events(tp_contact[k]) + tp_ev[k], key=lambda e: e["start"])
        if events:
            rel["finger_palm_distance"][f"{hand}_{F.FLEX_FINGERS[k % 5]}_tip, {other}_palm"] = events
    palm = features["palm_palm_dist"][i][None]
    pp_contact = contact_intervals(palm < PALM_EDGES[0])
    pp_ev = graded_events(palm, PALM_EDGES, PALM_LABELS, DIST_SPEED, VELOCITY_EPS["distance"],
                          blocked=_blocked_from(pp_contact[0], frames)[None])
    events = sorted(_contact_events(pp_contact[0]) + pp_ev[0], key=lambda e: e["start"])
    if events:
        rel["palm_palm_distance"]["left_palm, right_palm"] = events
    rel_pos = features["palm_rel"][i].T  # (3, T)
    codes = np.where(rel_pos > ALIGN, 1, np.where(rel_pos < -ALIGN, -1, 0))
    for k, row in enumerate(runs(codes)):
        axis, pos, neg = RELATIVE_AXES[k]
        events = []
        for v, s, e in row:
            if e - s < MIN_LEN_SHORT:
                continue
            des = (f"right hand is to the {pos if v > 0 else neg} of the left hand." if v
                   else f"right hand is ALIGNED with the left hand ({axis}).")
            events.append({"start": s, "end": e, "constant_des": des})
        if events:
            rel["palm_palm_relative_position"][axis] = events
    result["two_hand_relationships"] = rel
    return result


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along the last axis of (S, T), edges padded by repetition."""
    if window <= 1:
        return values
    pad = window // 2
    padded = np.pad(np.asarray(values, np.float64), ((0, 0), (pad, window - 1 - pad)),
                    mode="edge")
    csum = np.concatenate([np.zeros((padded.shape[0], 1)), np.cumsum(padded, axis=-1)], -1)
    return (csum[:, window:] - csum[:, :-window]) / window


def wrist_events(positions: np.ndarray) -> list[list[dict]]:
    """Wrist trajectory events per row of positions (S, T), rows = hand * 3 + axis.

    Directions are read from a 5-frame centred moving average (tracking jitter of a few mm
    flips frame-to-frame velocity signs; the average also widens a move by up to 2 frames
    each side, which covers the slow start and stop of real moves); displacement and speed
    come from the positions themselves.
    """
    out = []
    smoothed = smooth(positions, WRIST_SMOOTH)
    moving = moving_segments(smoothed, VELOCITY_EPS["wrist"], MIN_LEN_SHORT)
    for r, segments in enumerate(moving):
        _, pos_name, neg_name = WRIST_AXES[r % 3]
        events = []
        for sign, a, b in segments:
            disp = float(positions[r, b - 1] - positions[r, a])
            if abs(disp) < WRIST_MOVE or np.sign(disp) != sign:
                continue
            # the moving average widened the stretch by up to 2 frames each side
            moving_frames = max(1, b - 1 - a - 2 * (WRIST_SMOOTH // 2))
            speed = abs(disp) / (moving_frames / FPS)
            events.append({"start": a, "end": b, "direction": pos_name if sign > 0 else neg_name,
                           "v_des": speed_label(speed, WRIST_SPEED)})
        out.append(events)
    return out


def batch_events(features: dict[str, np.ndarray]) -> list[dict]:
    """Event JSON of every clip in a feature batch."""
    return [clip_events(features, i) for i in range(features["flexion"].shape[0])]


def validate_event_json(doc: dict, source: str = "events") -> None:
    """Raise ValueError naming `source` when `doc` is not in the HandX event schema."""
    expected = {"frame_count", "left_hand_events", "right_hand_events", "two_hand_relationships"}
    if not isinstance(doc, dict) or set(doc) != expected:
        raise ValueError(f"{source}: top-level keys {sorted(doc) if isinstance(doc, dict) else doc!r}"
                         f" != {sorted(expected)}")
    groups = [(f"{h}_hand_events", HAND_KEYS) for h in HANDS]
    groups.append(("two_hand_relationships", RELATION_KEYS))
    for key, families in groups:
        if set(doc[key]) != set(families):
            raise ValueError(f"{source}: {key} keys {sorted(doc[key])} != {sorted(families)}")
        for family in families:
            for name, events in doc[key][family].items():
                for ev in events:
                    keys = set(ev)
                    if keys not in ({"start", "end", "constant_des"},
                                    {"start", "end", "start_des", "end_des", "v_des"},
                                    {"start", "end", "direction", "v_des"}):
                        raise ValueError(f"{source}: {key}.{family}.{name}: bad event keys "
                                         f"{sorted(keys)}")
                    if not 0 <= ev["start"] < ev["end"] <= doc["frame_count"]:
                        raise ValueError(f"{source}: {key}.{family}.{name}: frames "
                                         f"{ev['start']}..{ev['end']} out of range")
