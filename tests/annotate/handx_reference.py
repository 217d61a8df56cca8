"""An independent implementation of HandX's feature and event definitions (test oracle).

Written from HandX's paper and released feature code, clip by clip and signal by signal
with plain loops, sharing nothing with the library except the joint order and the fixed
barycentric palm weights (HandX draws its palm points at random; the fixed set is one of
the library's listed deviations). `reference_events(motion, deviations=...)` applies the
named deviations of the library; without them it is HandX's released code as it behaves:

- "hyperextension": without it no hyperextension state (HandX's interval is empty);
- "still_steps": without it the sign of every nonzero frame change counts, however small;
- "wrist_sign": without it a zero velocity counts for both signs for the wrist too, and
  +1 is tried first;
- "contact_frames": without it a single frame within 2 cm is a fingertip contact;
- "right_tips": without it right-hand fingertips against the left palm use HandX's
  default arguments (no minimum change, windows shrinking 6 frames at a time, the start
  advancing 6 frames).
"""

from __future__ import annotations

import numpy as np

FPS = 30
TIPS = {"thumb": 16, "index": 17, "middle": 18, "ring": 19, "pinky": 20}
FINGER_ORDER = ("thumb", "index", "middle", "ring", "pinky")
CHAIN = {"thumb": (0, 13, 14, 15, 16), "index": (0, 1, 2, 3, 17), "middle": (0, 4, 5, 6, 18),
         "ring": (0, 10, 11, 12, 19), "pinky": (0, 7, 8, 9, 20)}
JOINT_NAME = {14: "thumb_mcp", 15: "thumb_ip", 1: "index_mcp", 2: "index_pip", 3: "index_dip",
              4: "middle_mcp", 5: "middle_pip", 6: "middle_dip", 10: "ring_mcp",
              11: "ring_pip", 12: "ring_dip", 7: "pinky_mcp", 8: "pinky_pip", 9: "pinky_dip"}
PALM_TRIANGLES = ((0, 13, 1), (0, 1, 4), (0, 4, 10), (0, 10, 7))
SPEED_NAMES = ("Slow", "Medium", "Fast")


def _palm(joints: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
    """(T, 100, 3) palm points of one hand (T, 21, 3)."""
    return np.concatenate([np.einsum("pk,tkc->tpc", barycentric, joints[:, list(tri)])
                           for tri in PALM_TRIANGLES], axis=1)


def _local(joints: np.ndarray) -> np.ndarray:
    """Joints relative to the wrist in the hand-local frame (T, 21, 3)."""
    x = joints[:, 4] - joints[:, 0]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = joints[:, 1] - joints[:, 0]
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    z = np.cross(x, w)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = np.cross(z, x)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    rel = joints - joints[:, :1]
    return np.stack([np.einsum("tjc,tc->tj", rel, a) for a in (x, y, z)], axis=-1)


def _bend(a: np.ndarray, b: np.ndarray, right: bool, thumb: bool, signed: bool) -> np.ndarray:
    a, b = a.copy(), b.copy()
    if not thumb:
        a[:, 1] = 0.0
        b[:, 1] = 0.0
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    angle = np.arccos(np.clip(np.sum(a * b, axis=1), -1.0, 1.0))
    n = np.cross(a, b)
    if not signed:
        sign = np.ones_like(angle)
    elif thumb:
        sign = -np.sign(n[:, 2])
    else:
        sign = np.sign(n[:, 1]) * (1.0 if right else -1.0)
    out = sign * angle
    out[np.degrees(angle) < 11.0] = 0.0
    return out


def hand_signals(joints: np.ndarray, right: bool) -> dict:
    """Per-frame signals of one hand (T, 21, 3): flexion per reported joint, spacing per
    pair, thumb-to-tip distance per tip, wrist position."""
    local = _local(joints)
    flex = {}
    for finger in FINGER_ORDER:
        chain = CHAIN[finger]
        for k in range(3):
            j1, j2, j3 = chain[k:k + 3]
            if finger == "thumb" and k == 0:
                continue
            a, b = local[:, j2] - local[:, j1], local[:, j3] - local[:, j2]
            flex[JOINT_NAME[j2]] = _bend(a, b, right, finger == "thumb",
                                         not (finger == "thumb" and k == 2))
    spacing = {}
    for (f1, m1, p1), (f2, m2, p2) in ((("index", 1, 2), ("middle", 4, 5)),
                                       (("middle", 4, 5), ("ring", 10, 11)),
                                       (("ring", 10, 11), ("pinky", 7, 8))):
        u, v = local[:, p1] - local[:, m1], local[:, p2] - local[:, m2]
        cos = np.sum(u * v, 1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
        spacing[f"{f1}, {f2}"] = np.arccos(np.clip(cos, -1.0, 1.0))
    tips = {f"{f}_tip, thumb_tip": np.linalg.norm(joints[:, TIPS[f]] - joints[:, 16], axis=1)
            for f in ("index", "middle", "ring", "pinky")}
    return {"flex": flex, "spacing": spacing, "tips": tips, "wrist": joints[:, 0].copy()}


def _label(value, bands):
    for lo, hi, name in bands:
        if lo <= value < hi:
            return name
    return None


def _consistent(pos: int, neg: int, n: int, zeros_both: bool) -> int:
    """HandX's sign test on a window of n velocities with pos rising and neg falling."""
    zero = n - pos - neg
    if zeros_both:
        if (pos + zero) / n >= 0.8:
            return 1
        if (neg + zero) / n >= 0.8:
            return -1
        return 0
    if pos / n >= 0.8:
        return 1
    if neg / n >= 0.8:
        return -1
    return 0


def split(x, states, speeds, delta=None, min_len=6, need_change=True, step=1,
          zeros_both=True, still=0.0):
    """HandX's greedy longest-window segmentation of one signal (T,); `still`: frame
    changes up to this size count as zero in the sign test (0: HandX)."""
    x = [float(a) for a in x]
    n = len(x)
    change = [0.0] + [b - a for a, b in zip(x[:-1], x[1:])]
    v = [c * FPS for c in change]
    pos_before, neg_before = [0], [0]  # velocities of frames < k that rise / fall
    for c in change:
        pos_before.append(pos_before[-1] + (c > still))
        neg_before.append(neg_before[-1] + (c < -still))
    events = []
    i = 0
    while i < n:
        j = n
        while j > i:
            if delta is not None and abs(x[j - 1] - x[i]) < delta:
                j -= step
                continue
            if j - i < min_len:
                j = i
                break
            sign = _consistent(pos_before[j] - pos_before[i], neg_before[j] - neg_before[i],
                               j - i, zeros_both)
            if sign:
                a, b = _label(x[i], states), _label(x[j - 1], states)
                if a != b or not need_change:
                    events.append({"start": i, "end": j, "sign": sign, "start_des": a,
                                   "end_des": b,
                                   "v_des": _label(abs(sum(v[i:j]) / (j - i)), speeds)})
                    break
            j -= step
        i = j if j > i else i + step
    if not events and need_change:
        return [{"start": 0, "end": n, "constant_des": _label(sum(x) / n, states)}]
    return events


def contacts(d, threshold=0.02, min_frames=1):
    """Runs of d <= threshold lasting min_frames or more, end frame inclusive."""
    out, i, n = [], 0, len(d)
    while i < n:
        if d[i] > threshold:
            i += 1
            continue
        j = i
        while j + 1 < n and d[j + 1] <= threshold:
            j += 1
        if j - i + 1 >= min_frames:
            out.append({"start": i, "end": j, "constant_des": "Contact"})
        i = j + 1
    return out


def _graded(events):
    return [{k: e[k] for k in ("start", "end", "start_des", "end_des", "v_des")}
            if "v_des" in e else e for e in events]


DEG = np.pi / 180


DEVIATIONS = ("hyperextension", "still_steps", "wrist_sign", "right_tips", "contact_frames")


def reference_events(motion: np.ndarray, barycentric: np.ndarray,
                     deviations=DEVIATIONS) -> dict:
    """HandX event JSON of one clip (T, 2, 21, 3), with the named library deviations
    applied (`DEVIATIONS`; an empty list: HandX's released code)."""
    deviations = set(deviations or ())
    motion = np.asarray(motion, dtype=np.float64)
    frames = motion.shape[0]
    hyper = -20 * DEG if "hyperextension" in deviations else -np.pi
    flex_states = [(-np.pi, hyper, "Hyperextended"), (hyper, np.pi / 6, "Fully extended"),
                   (np.pi / 6, np.pi / 3, "Partially bent"), (np.pi / 3, np.pi + 1e-9,
                                                               "Fully bent")]
    flex_speed = [(0, 0.15, "Slow"), (0.15, 1.3, "Medium"), (1.3, np.inf, "Fast")]
    spacing_states = [(0, np.pi / 9, "Closed"), (np.pi / 9, np.inf, "Open")]
    spacing_speed = [(0, 0.03, "Slow"), (0.03, 1.3, "Medium"), (1.3, np.inf, "Fast")]
    wrist_speed = [(0, 0.03, "Slow"), (0.03, 0.15, "Medium"), (0.15, np.inf, "Fast")]
    dist_speed = [(0, 0.025, "Slow"), (0.025, 0.07, "Medium"), (0.07, np.inf, "Fast")]
    doc = {"frame_count": frames}
    kw = {"still": 1e-5} if "still_steps" in deviations else {}
    shortest = 2 if "contact_frames" in deviations else 1
    names = {0: ("left-right", "left-to-right", "right-to-left"),
             1: ("front-back", "back-to-front", "front-to-back"),
             2: ("down-up", "down-to-up", "up-to-down")}
    for h, hand in enumerate(("left", "right")):
        sig = hand_signals(motion[:, h], right=h == 1)
        out = {"finger_flexing": {}, "finger_spacing": {}, "finger_tip_contact": {},
               "wrist_trajectory": {}}
        for key, x in sig["flex"].items():
            out["finger_flexing"][key] = _graded(split(x, flex_states, flex_speed, np.pi / 6, **kw))
        for key, x in sig["spacing"].items():
            out["finger_spacing"][key] = _graded(split(x, spacing_states, spacing_speed,
                                                       np.pi / 10, **kw))
        for key, d in sig["tips"].items():
            ev = contacts(d, min_frames=shortest)
            if ev:
                out["finger_tip_contact"][key] = ev
        for axis in range(3):
            ev = split(sig["wrist"][:, axis], [], wrist_speed, 0.03, min_len=4,
                       need_change=False, zeros_both="wrist_sign" not in deviations, **kw)
            if ev:
                axis_name, pos, neg = names[axis]
                out["wrist_trajectory"][axis_name] = [
                    {"start": e["start"], "end": e["end"],
                     "direction": pos if e["sign"] > 0 else neg, "v_des": e["v_des"]}
                    for e in ev]
        doc[f"{hand}_hand_events"] = out
    rel = {"finger_tip_contact": {}, "finger_palm_distance": {}, "palm_palm_distance": {},
           "palm_palm_relative_position": {}}
    for a in FINGER_ORDER:
        for b in FINGER_ORDER:
            d = np.linalg.norm(motion[:, 0, TIPS[a]] - motion[:, 1, TIPS[b]], axis=1)
            ev = contacts(d, min_frames=shortest)
            if ev:
                rel["finger_tip_contact"][f"left_{a}_tip, right_{b}_tip"] = ev
    palms = [_palm(motion[:, h], barycentric) for h in range(2)]
    tip_palm_states = [(0, 0.025, "Contact"), (0.025, 0.035, "Near"), (0.035, np.inf, "Far")]
    for h, hand in enumerate(("left", "right")):
        other = ("left", "right")[1 - h]
        for f in FINGER_ORDER:
            d = np.linalg.norm(motion[:, h, TIPS[f], None] - palms[1 - h], axis=-1)
            mean5 = np.sort(d, axis=1)[:, :5].mean(axis=1)
            if h == 0 or "right_tips" in deviations:
                ev = split(mean5, tip_palm_states, dist_speed, 0.03, **kw)
            else:
                ev = split(mean5, tip_palm_states, dist_speed, None, step=6, **kw)
            rel["finger_palm_distance"][f"{hand}_{f}_tip, {other}_palm"] = _graded(ev)
    nearest = np.array([np.linalg.norm(palms[0][t][:, None] - palms[1][t][None], axis=-1)
                        .min(axis=1) for t in range(frames)])
    palm_palm = np.sort(nearest, axis=1)[:, :30].mean(axis=1)
    palm_states = [(0, 0.04, "Contact"), (0.04, 0.08, "Near"), (0.08, 0.12, "Medium"),
                   (0.12, np.inf, "Far")]
    rel["palm_palm_distance"]["left_palm, right_palm"] = _graded(
        split(palm_palm, palm_states, dist_speed, 0.05, **kw))
    centre = palms[1].mean(axis=1) - palms[0].mean(axis=1)
    for axis, (name, pos, neg) in enumerate((("left-right", "RIGHT", "LEFT"),
                                             ("front-back", "FRONT", "BACK"),
                                             ("up-down", "UP", "DOWN"))):
        states = [(-np.inf, -0.02, f"right hand is to the {neg} of the left hand."),
                  (-0.02, 0.02, "right hand is ALIGNED with the left hand."),
                  (0.02, np.inf, f"right hand is to the {pos} of the left hand.")]
        rel["palm_palm_relative_position"][name] = _graded(
            split(centre[:, axis], states, dist_speed, 0.05, min_len=4, **kw))
    doc["two_hand_relationships"] = rel
    return doc


FAMILIES = (("left_hand_events", "finger_flexing"), ("left_hand_events", "finger_spacing"),
            ("left_hand_events", "finger_tip_contact"), ("left_hand_events", "wrist_trajectory"),
            ("right_hand_events", "finger_flexing"), ("right_hand_events", "finger_spacing"),
            ("right_hand_events", "finger_tip_contact"),
            ("right_hand_events", "wrist_trajectory"),
            ("two_hand_relationships", "finger_tip_contact"),
            ("two_hand_relationships", "finger_palm_distance"),
            ("two_hand_relationships", "palm_palm_distance"),
            ("two_hand_relationships", "palm_palm_relative_position"))


def family_name(group: str, family: str) -> str:
    if group == "two_hand_relationships":
        return {"finger_tip_contact": "tip-tip contact (two hands)"}.get(family, family)
    return {"finger_tip_contact": "tip contact (one hand)"}.get(family, family)


def compare(docs_a, docs_b) -> dict[str, tuple[int, int]]:
    """Per family: (keys whose event lists agree exactly, keys) over all clips; a key present
    in only one document counts as a disagreement."""
    out: dict[str, list[int]] = {}
    for a, b in zip(docs_a, docs_b):
        for group, family in FAMILIES:
            fa, fb = a[group][family], b[group][family]
            name = family_name(group, family)
            tally = out.setdefault(name, [0, 0])
            for key in set(fa) | set(fb):
                tally[0] += fa.get(key) == fb.get(key)
                tally[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}
