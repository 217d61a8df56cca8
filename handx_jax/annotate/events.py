"""HandX's event segmentation of motion features into its per-clip JSON, vectorised.

Graded families (flexion, spacing, fingertip-palm and palm-palm distance, palm relative
position) and the wrist follow HandX's released segmentation: from each start frame i (in
order) the longest window [i, j) that is at least `min_len` frames long, changes by at least
`delta` between its first and last frame, has >= 80 % of its frame velocities of one sign
(velocity of frame t = (x_t - x_(t-1)) * fps, 0 at frame 0; a zero counts for either sign;
changes within `STILL_STEP` count as zero),
and starts and ends in different states, is an event `{start, end, start_des, end_des,
v_des}` (end exclusive; speed from the window's mean velocity), and the search resumes at j;
otherwise at i + 1. A graded signal with no event gets one whole-clip event with the state
of its mean. The wrist needs no state change and reports `{start, end, direction, v_des}`.
Contacts (fingertip on fingertip, within a hand and across hands) are the runs of frames
with distance <= 2 cm, written `{start, end, constant_des: "Contact"}` with the end frame
*inclusive*, as HandX writes them.

Deliberate differences from HandX's released code (docs/annotate.md): the paper's
hyperextension band (< -20 degrees), fixed palm points (in the features), the wrist's sign
test counts only its own sign (zeros count for neither, so a still wrist never gets a
direction), changes below float precision count as zero velocity, fingertip contacts last
at least `CONTACT_MIN_FRAMES` (2) frames, and right-hand fingertips against the left palm
are segmented with the same parameters as left-hand fingertips.

All windows of all signals of a batch are scored with numpy, one window length at a time;
Python only writes the chosen events as JSON.
"""

from __future__ import annotations

import numpy as np

from handx_jax.hand import descriptors as D
from handx_jax.hand import geometry as G

FPS = D.FPS
HANDS = D.HANDS
HAND_KEYS = ("finger_flexing", "finger_spacing", "finger_tip_contact", "wrist_trajectory")
RELATION_KEYS = ("finger_tip_contact", "finger_palm_distance", "palm_palm_distance",
                 "palm_palm_relative_position")
# Joints reported under finger_flexing, keyed by joint name as HandX keys them (the thumb
# CMC is not reported): (finger index, joint index, name).
FLEX_REPORTED = tuple((f_i, j_i, f"{finger}_{name}")
                      for f_i, finger in enumerate(G.FINGERS)
                      for j_i, name in enumerate(G.FLEX_JOINT_NAMES[f_i])
                      if not (finger == "thumb" and name == "cmc"))
# The keys of every family in the order HandX writes them (rows of a clip in the same order).
_FLEX_KEYS = tuple(name for _, _, name in FLEX_REPORTED)
_N_FLEX = len(_FLEX_KEYS)
_SPACING_KEYS = tuple(f"{a}, {b}" for a, b in G.SPACING_PAIRS)
_INTRA_KEYS = tuple(f"{tip}_tip, thumb_tip" for tip in G.INTRA_TIPS)
_WRIST_KEYS = tuple(axis for axis, _, _ in D.WRIST_AXES)
_INTER_KEYS = tuple(f"left_{a}_tip, right_{b}_tip" for a in G.FINGERS for b in G.FINGERS)
_TIP_PALM_KEYS = tuple(f"{hand}_{finger}_tip, {HANDS[1 - h]}_palm"
                       for h, hand in enumerate(HANDS) for finger in G.FINGERS)
_FLEX_F = np.array([f for f, _, _ in FLEX_REPORTED])
_FLEX_J = np.array([j for _, j, _ in FLEX_REPORTED])


def window_ends(values: np.ndarray, spec: D.Graded, strict_sign: bool = False) -> np.ndarray:
    """For every row and start frame i of values (S, T), the end j of the longest valid
    window [i, j), or -1 (S, T) int.

    `strict_sign`: zero velocities count for neither sign (the wrist); otherwise for both
    (HandX's test). Windows are scored one length at a time, all rows and start frames
    together (contiguous slices, no (S, T, T) array); longer valid windows overwrite
    shorter ones.
    """
    x = np.asarray(values, dtype=np.float64)
    rows, length = x.shape
    count = np.int8 if length < 128 else np.int16
    vel = np.zeros_like(x)
    vel[:, 1:] = _steps(x)
    pos = np.zeros((rows, length + 1), count)
    neg = np.zeros((rows, length + 1), count)
    np.cumsum(vel > 0, axis=-1, out=pos[:, 1:])
    np.cumsum(vel < 0, axis=-1, out=neg[:, 1:])
    state = D.state_index(x, spec.edges).astype(np.int8) if spec.edges else None
    ends = np.full((rows, length), -1, np.int64)
    for span in range(spec.min_len - 1, length):  # window [i, i + span], n = span + 1
        starts = length - span
        diff = x[:, span:] - x[:, :starts]
        valid = np.abs(diff, out=diff) >= spec.delta
        if state is not None:
            valid &= state[:, span:] != state[:, :starts]
        n_pos = pos[:, span + 1:] - pos[:, :starts]  # rising among v_i..v_(i+span)
        n_neg = neg[:, span + 1:] - neg[:, :starts]
        n = span + 1
        if strict_sign:  # >= 80 % of one sign: max(rising, falling) >= ceil(4 n / 5)
            valid &= np.maximum(n_pos, n_neg, out=n_pos) >= -(-4 * n // 5)
        else:  # <= 20 % of the other sign: min(rising, falling) <= floor(n / 5)
            valid &= np.minimum(n_pos, n_neg, out=n_pos) <= n // 5
        np.copyto(ends[:, :starts], np.arange(span + 1, length + 1), where=valid)
    return ends


def segment(values: np.ndarray, spec: D.Graded, strict_sign: bool = False) -> list[list]:
    """Events per row of values (S, T): [(start, end, sign, speed index, start state,
    end state)] in order; rows with no event and `spec.constant` get
    [(0, T, 0, -1, mean state, mean state)]. States are band indices of `spec.edges`.
    """
    x = np.asarray(values, dtype=np.float64)
    rows, length = x.shape
    out: list[list] = [[] for _ in range(rows)]
    # Rows whose total range is below delta (or whose state never changes) have no window.
    active = np.ptp(x, axis=-1) >= spec.delta
    if spec.edges:
        state = D.state_index(x, spec.edges)
        active &= state.min(axis=-1) != state.max(axis=-1)
    idx = np.flatnonzero(active)
    if idx.size:
        ends = np.concatenate([window_ends(x[idx[a:a + 1024]], spec, strict_sign)
                               for a in range(0, idx.size, 1024)])
        found_r, found_s, found_e = [], [], []
        cur = np.zeros(idx.size, np.int64)
        alive = np.ones(idx.size, bool)
        ar = np.arange(idx.size)
        while alive.any():
            a = ar[alive]
            j = ends[a, cur[a]]
            hit = j > 0
            found_r.append(a[hit])
            found_s.append(cur[a][hit])
            found_e.append(j[hit])
            cur[a] = np.where(hit, j, cur[a] + 1)
            alive[a] = cur[a] < length
        r = idx[np.concatenate(found_r)]
        s = np.concatenate(found_s)
        e = np.concatenate(found_e)
        first = np.where(s > 0, x[r, np.maximum(s - 1, 0)], x[r, 0])
        mean_v = (x[r, e - 1] - first) * FPS / (e - s)  # velocities s..e-1 sum to a difference
        speed = D.speed_index(mean_v, spec.speed)
        vel = _steps(x[idx])
        where = np.searchsorted(idx, r)
        n_pos = _count_between(vel > 0, where, s, e)
        n_neg = _count_between(vel < 0, where, s, e)
        if strict_sign:
            sign = np.where(5 * n_pos >= 4 * (e - s), 1, -1)
        else:
            sign = np.where(5 * n_neg <= e - s, 1, -1)
        st0 = D.state_index(x[r, s], spec.edges) if spec.edges else np.zeros_like(s)
        st1 = D.state_index(x[r, e - 1], spec.edges) if spec.edges else np.zeros_like(s)
        order = np.lexsort((s, r))
        for row, *event in zip(*(a[order].tolist() for a in (r, s, e, sign, speed, st0, st1))):
            out[row].append(tuple(event))
    if spec.constant:
        empty = [k for k in range(rows) if not out[k]]
        if empty:
            mean_state = D.state_index(x[empty].mean(axis=-1), spec.edges)
            for k, st in zip(empty, mean_state.tolist()):
                out[k].append((0, length, 0, -1, int(st), int(st)))
    return out


def _steps(x: np.ndarray) -> np.ndarray:
    """Frame-to-frame changes (S, T - 1), those within `STILL_STEP` of zero set to zero."""
    step = np.diff(x, axis=-1)
    step[np.abs(step) <= D.STILL_STEP] = 0.0
    return step


def _count_between(flags: np.ndarray, rows: np.ndarray, start: np.ndarray,
                   end: np.ndarray) -> np.ndarray:
    """Number of True among the velocities of frames start..end-1 (velocity of frame t is
    flags[t - 1]; frame 0 has velocity 0) for each (row, start, end)."""
    csum = np.zeros((flags.shape[0], flags.shape[1] + 1), np.int64)
    np.cumsum(flags, axis=-1, out=csum[:, 1:])
    return csum[rows, end - 1] - csum[rows, np.maximum(start - 1, 0)]


def graded_events(values: np.ndarray, spec: D.Graded) -> list[list[dict]]:
    """HandX event dicts per row of a graded signal (S, T)."""
    out = []
    for row in segment(values, spec):
        events = []
        for s, e, _, speed, st0, st1 in row:
            if speed < 0:
                events.append({"start": s, "end": e, "constant_des": spec.labels[st0]})
            else:
                events.append({"start": s, "end": e, "start_des": spec.labels[st0],
                               "end_des": spec.labels[st1], "v_des": D.SPEED_LABELS[speed]})
        out.append(events)
    return out


def wrist_events(positions: np.ndarray) -> list[list[dict]]:
    """Wrist trajectory events per row of positions (S, T), rows = hand * 3 + axis."""
    out = []
    for r, row in enumerate(segment(positions, D.WRIST, strict_sign=True)):
        _, pos_name, neg_name = D.WRIST_AXES[r % 3]
        out.append([{"start": s, "end": e, "direction": pos_name if sign > 0 else neg_name,
                     "v_des": D.SPEED_LABELS[speed]} for s, e, sign, speed, _, _ in row])
    return out


def contact_runs(mask: np.ndarray, min_frames: int = D.CONTACT_MIN_FRAMES
                 ) -> list[list[tuple[int, int]]]:
    """Runs of at least `min_frames` True frames per row of a boolean (S, T) mask:
    [(first, last)] (last inclusive)."""
    mask = np.asarray(mask, dtype=bool)
    rows = mask.shape[0]
    padded = np.zeros((rows, mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    r_up, up = np.nonzero(np.diff(padded, axis=-1) == 1)
    _, down = np.nonzero(np.diff(padded, axis=-1) == -1)
    out: list[list[tuple[int, int]]] = [[] for _ in range(rows)]
    for r, a, b in zip(r_up.tolist(), up.tolist(), down.tolist()):
        if b - a >= min_frames:
            out[r].append((a, b - 1))
    return out


def _contact_events(runs) -> list[dict]:
    return [{"start": s, "end": e, "constant_des": "Contact"} for s, e in runs]


def contact_spans(events: list[dict], frames: int,
                  inclusive: bool = False) -> list[tuple[int, int]]:
    """Frames [start, end) in contact according to one key's events.

    `inclusive`: contact events (fingertip families, end frame inclusive). Otherwise a
    graded family: a "Contact" held event gives its frames; an event ending in "Contact"
    starts a contact at its last frame, which lasts until the first frame of the next event
    leaving "Contact" (or the clip's end); an event leaving "Contact" with no contact opened
    before closes one that began where the previous event ended (or at frame 0).
    """
    if inclusive:
        return [(e["start"], e["end"] + 1) for e in events if e.get("constant_des") == "Contact"]
    spans: list[tuple[int, int]] = []
    open_at, prev_end = None, 0
    for ev in events:
        if ev.get("constant_des") == "Contact":
            spans.append((ev["start"], ev["end"]))
        elif ev.get("start_des") == "Contact":
            spans.append((prev_end if open_at is None else open_at, ev["start"] + 1))
            open_at = None
        if ev.get("end_des") == "Contact":
            open_at = ev["end"] - 1
        prev_end = ev["end"]
    if open_at is not None:
        spans.append((open_at, frames))
    return spans


def batch_events(features: dict[str, np.ndarray]) -> list[dict]:
    """Event JSON of every clip in a feature batch (`features.extract_features`)."""
    flex = features["flexion"]  # (N, T, 2, 5, 3)
    n, frames = flex.shape[:2]
    # --- every signal of the batch as rows (N, K, T), segmented family by family
    flex_rows = flex[:, :, :, _FLEX_F, _FLEX_J]  # (N, T, 2, 14)
    flex_ev = graded_events(_rows(flex_rows), D.FLEXION)
    spacing_ev = graded_events(_rows(features["spacing"]), D.SPACING)
    intra_runs = contact_runs(_rows(features["intra_tip_dist"]) <= D.TIP_CONTACT)
    wrist_ev = wrist_events(_rows(features["wrist"]))
    inter_runs = contact_runs(_rows(features["inter_tip_dist"]) <= D.TIP_CONTACT)
    tip_palm_ev = graded_events(_rows(features["tip_palm_dist"]), D.TIP_PALM)
    palm_ev = graded_events(_rows(features["palm_palm_dist"][..., None]), D.PALM_PALM)
    rel = _rows(features["palm_rel"]).reshape(n, 3, frames)
    rel_ev = [graded_events(rel[:, a], D.relative(a)) for a in range(3)]
    docs = []
    for i in range(n):
        doc: dict = {"frame_count": int(frames)}
        for h, hand in enumerate(HANDS):
            row = i * 2 + h
            doc[f"{hand}_hand_events"] = {
                "finger_flexing": dict(zip(_FLEX_KEYS,
                                           flex_ev[row * _N_FLEX:(row + 1) * _N_FLEX])),
                "finger_spacing": dict(zip(_SPACING_KEYS, spacing_ev[row * 3:row * 3 + 3])),
                "finger_tip_contact": {key: _contact_events(runs) for key, runs in zip(
                    _INTRA_KEYS, intra_runs[row * 4:row * 4 + 4]) if runs},
                "wrist_trajectory": {key: events for key, events in zip(
                    _WRIST_KEYS, wrist_ev[row * 3:row * 3 + 3]) if events}}
        doc["two_hand_relationships"] = {
            "finger_tip_contact": {key: _contact_events(runs) for key, runs in zip(
                _INTER_KEYS, inter_runs[i * 25:i * 25 + 25]) if runs},
            "finger_palm_distance": dict(zip(_TIP_PALM_KEYS, tip_palm_ev[i * 10:i * 10 + 10])),
            "palm_palm_distance": {"left_palm, right_palm": palm_ev[i]},
            "palm_palm_relative_position": {axis: rel_ev[a][i] for a, (axis, _, _)
                                            in enumerate(D.RELATIVE_AXES)}}
        docs.append(doc)
    return docs


def _rows(array: np.ndarray) -> np.ndarray:
    """(N, T, ...) -> (N * prod(...), T): one row per signal, clip-major."""
    n, frames = array.shape[:2]
    return np.moveaxis(array.reshape(n, frames, -1), 1, 2).reshape(-1, frames)


def clip_events(features: dict[str, np.ndarray], i: int) -> dict:
    """The HandX event JSON of clip `i` of a batch of features (`extract_features`)."""
    return batch_events({k: v[i:i + 1] for k, v in features.items()})[0]


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
            inclusive = family == "finger_tip_contact"
            for name, events in doc[key][family].items():
                for ev in events:
                    keys = set(ev)
                    if keys not in ({"start", "end", "constant_des"},
                                    {"start", "end", "start_des", "end_des", "v_des"},
                                    {"start", "end", "direction", "v_des"}):
                        raise ValueError(f"{source}: {key}.{family}.{name}: bad event keys "
                                         f"{sorted(keys)}")
                    last = doc["frame_count"] - (1 if inclusive else 0)
                    ok = ev["start"] <= ev["end"] if inclusive else ev["start"] < ev["end"]
                    if not (ok and 0 <= ev["start"] and ev["end"] <= last):
                        raise ValueError(f"{source}: {key}.{family}.{name}: frames "
                                         f"{ev['start']}..{ev['end']} out of range")
