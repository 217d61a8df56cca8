"""Accuracy of features, events and rules captions against the synthetic ground truth.

Prints one table:
- contact events (within a hand: thumb on a fingertip; between hands: fingertip on the
  other palm, fingertip on fingertip, palm on palm): event-level precision, recall and F1,
  an event matching a ground-truth interval of the same pair at IoU >= 0.5 (one-to-one);
  fingertip-palm and palm-palm contacts are states of graded families, whose events (HandX's
  longest windows) locate a contact only roughly, so they are also scored per clip: does
  the event JSON reach "Contact" for the pair when the ground truth has a contact;
- per-finger flexion state accuracy, frame-wise (`descriptors.finger_state`: the MCP's
  hyperextension, else the most bent joint; measured vs intended), and per joint;
- wrist movement direction accuracy: for every intended translation of a wrist, the
  direction of the measured event that overlaps it most on that axis (none = wrong), and
  frame-wise over the frames of intended translations (plus how often the speed band of a
  correctly directed event agrees with the intended one);
- the share of clips whose five `rules` triplets mention every contact and
  hyperextension event of their event JSON.

    python tools/annotation_accuracy.py --clips 2000            # generates the data
    python tools/annotation_accuracy.py --data-dir DIR --split train
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def _intervals(mask_t: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a 1-D mask."""
    padded = np.concatenate([[False], mask_t, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _iou(a, b) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


class EventScore:
    """Pooled one-to-one matching of predicted and true intervals at IoU >= threshold."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.tp = self.fp = self.fn = 0
        self.examples = []

    def add(self, pred, true, where=None):
        used = set()
        matched = 0
        for p in pred:
            best, best_iou = None, self.threshold
            for k, t in enumerate(true):
                if k in used:
                    continue
                iou = _iou(p, t)
                if iou >= best_iou:
                    best, best_iou = k, iou
            if best is not None:
                used.add(best)
                matched += 1
        self.tp += matched
        self.fp += len(pred) - matched
        self.fn += len(true) - matched
        if (len(pred) != matched or len(true) != matched) and where and len(self.examples) < 8:
            self.examples.append((where, pred, true))

    def merge(self, other: "EventScore") -> "EventScore":
        out = EventScore(self.threshold)
        out.tp, out.fp, out.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn
        return out

    def prf(self):
        p = self.tp / max(self.tp + self.fp, 1)
        r = self.tp / max(self.tp + self.fn, 1)
        return p, r, 2 * p * r / max(p + r, 1e-12)


def contact_scores(docs, names, gt) -> dict[str, EventScore]:
    """Event scores per contact kind (intra, tip_palm, tip_tip, palm_palm).

    Contact intervals come from the event JSON (`events.contact_spans`): fingertip contacts
    are events with inclusive end frames; fingertip-palm and palm-palm contacts are the
    frames a graded family's events put in the "Contact" state.
    """
    from handx_jax.annotate import events as E
    from handx_jax.hand import geometry as G
    scores = {k: EventScore() for k in ("intra", "tip_palm", "tip_tip", "palm_palm",
                                        "tip_palm_clip", "palm_palm_clip")}
    fingers = G.FINGERS
    for i, (doc, name) in enumerate(zip(docs, names)):
        frames = doc["frame_count"]

        def _pred(events, inclusive=False):
            return E.contact_spans(events, frames, inclusive)

        for h, hand in enumerate(("left", "right")):
            got = doc[f"{hand}_hand_events"]["finger_tip_contact"]
            for k, tip in enumerate(G.INTRA_TIPS):
                scores["intra"].add(_pred(got.get(f"{tip}_tip, thumb_tip", []), True),
                                    _intervals(gt["intra_contact"][i, :, h, k]),
                                    (name, hand, tip))
        rel = doc["two_hand_relationships"]
        for h, hand in enumerate(("left", "right")):
            other = ("left", "right")[1 - h]
            for f, finger in enumerate(fingers):
                key = f"{hand}_{finger}_tip, {other}_palm"
                pred = _pred(rel["finger_palm_distance"].get(key, []))
                true = _intervals(gt["inter_contact"][i, :, h, f])
                scores["tip_palm"].add(pred, true, (name, key))
                scores["tip_palm_clip"].add(pred[:1] and [(0, 1)], true[:1] and [(0, 1)])
        for a, fa in enumerate(fingers):
            for b, fb in enumerate(fingers):
                key = f"left_{fa}_tip, right_{fb}_tip"
                scores["tip_tip"].add(_pred(rel["finger_tip_contact"].get(key, []), True),
                                      _intervals(gt["inter_tip_contact"][i, :, a, b]),
                                      (name, key))
        pred = _pred(rel["palm_palm_distance"].get("left_palm, right_palm", []))
        true = _intervals(gt["palm_contact"][i])
        scores["palm_palm"].add(pred, true, (name, "palms"))
        scores["palm_palm_clip"].add(pred[:1] and [(0, 1)], true[:1] and [(0, 1)])
    return scores


AXES = {"x": (0, "left-right"), "y": (1, "front-back"), "z": (2, "down-up")}
WORDS = {"right": "left-to-right", "left": "right-to-left", "forward": "back-to-front",
         "backward": "front-to-back", "up": "down-to-up", "down": "up-to-down"}


def wrist_scores(docs, records):
    """(event accuracy, frame accuracy, count) of wrist directions vs intended translations."""
    right_events = right_frames = total_events = total_frames = same_speed = 0
    for doc, rec in zip(docs, records):
        for hand in ("left", "right"):
            for ev in rec["events"][hand]:
                if ev.get("family") != "wrist_trajectory" or ev.get("direction") not in WORDS:
                    continue
                _, axis_name = AXES[ev["axis"]]
                want = WORDS[ev["direction"]]
                start, end = ev["start"], ev["end"] + 1  # inclusive -> exclusive
                pred = doc[f"{hand}_hand_events"]["wrist_trajectory"].get(axis_name, [])
                overlaps = [(min(end, p["end"]) - max(start, p["start"]), p) for p in pred]
                overlaps = [o for o in overlaps if o[0] > 0]
                total_events += 1
                best = max(overlaps, key=lambda o: o[0])[1] if overlaps else None
                if best is not None and best["direction"] == want:
                    right_events += 1
                    same_speed += best["v_des"].lower() == str(ev.get("speed", "")).lower()
                labels = np.array([""] * (end - start), dtype=object)
                for p in pred:
                    lo, hi = max(start, p["start"]), min(end, p["end"])
                    if hi > lo:
                        labels[lo - start:hi - start] = p["direction"]
                right_frames += int(np.sum(labels == want))
                total_frames += end - start
    return (right_events / max(total_events, 1), right_frames / max(total_frames, 1),
            total_events, same_speed / max(right_events, 1))


def flexion_accuracy(measured, true):
    from handx_jax.hand import descriptors as D
    finger = float(np.mean(D.finger_state(measured) == D.finger_state(true)))
    joint = float(np.mean(D.state_index(measured, D.FLEX_EDGES)
                          == D.state_index(true, D.FLEX_EDGES)))
    return finger, joint


def load_or_generate(args):
    from handx_jax.data import store
    if args.data_dir:
        data_dir, split = args.data_dir, args.split
    else:
        from handx_jax.data import synthetic
        data_dir = args.work_dir or tempfile.mkdtemp(prefix="handx_accuracy_")
        split = "train"
        start = time.perf_counter()
        synthetic.write_dataset(data_dir, args.clips, 0, seed=args.seed, quality=args.quality)
        print(f"generated {args.clips} clips (quality {args.quality}, seed {args.seed}) in "
              f"{time.perf_counter() - start:.0f}s into {data_dir}")
    table = store.load_any_table(store.find_split(data_dir, split))
    with np.load(os.path.join(data_dir, f"{split}_ground_truth.npz"), allow_pickle=False) as z:
        gt = {k: z[k] for k in z.files}
    with open(os.path.join(data_dir, f"{split}_ground_truth.jsonl"), encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    if [str(n) for n in gt["names"]] != list(table.names) or \
            [r["clip"] for r in records] != list(table.names):
        raise SystemExit(f"{data_dir}: ground truth and clips are not in the same order")
    if args.limit:
        n = args.limit
        table.names = table.names[:n]
        gt = {k: v[:n] for k, v in gt.items()}
        records = records[:n]
    lengths = np.diff(table.offsets)
    if len(set(lengths.tolist())) != 1:
        raise SystemExit("clips of different lengths; this tool expects one length")
    motion = table.motion[: len(table.names) * lengths[0]].reshape(len(table.names),
                                                                   lengths[0], 2, 21, 3)
    return table.names, motion, gt, records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000, help="clips to generate")
    parser.add_argument("--data-dir", default=None, help="use an existing synthetic dataset")
    parser.add_argument("--split", default="train")
    parser.add_argument("--work-dir", default=None, help="where to generate (default: temp)")
    parser.add_argument("--quality", default="high", choices=("high", "medium", "low"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips")
    parser.add_argument("--show-misses", action="store_true", help="print unmatched examples")
    args = parser.parse_args(argv)

    from handx_jax.annotate import events as E
    from handx_jax.annotate import features as F
    from handx_jax.annotate import reasoner_rules as R

    names, motion, gt, records = load_or_generate(args)
    start = time.perf_counter()
    feats = F.extract_features(motion, workers=2)
    t_feat = time.perf_counter() - start
    start = time.perf_counter()
    docs = E.batch_events(feats)
    t_events = time.perf_counter() - start
    scores = contact_scores(docs, names, gt)
    between = scores["tip_palm"].merge(scores["tip_tip"]).merge(scores["palm_palm"])
    finger_acc, joint_acc = flexion_accuracy(feats["flexion"], gt["flexion"])
    wrist_event_acc, wrist_frame_acc, wrist_count, wrist_speed = wrist_scores(docs, records)
    start = time.perf_counter()
    complete, critical, failures = 0, 0, []
    for name, doc in zip(names, docs):
        triplets = R.describe(doc, seed=args.seed, name=name)
        critical += len(R.critical_events(doc))
        missing = R.missing_critical(doc, triplets)
        complete += not missing
        if missing and len(failures) < 5:
            failures.append((name, missing[:3]))
    t_rules = time.perf_counter() - start

    print(f"clips: {len(names)} x {motion.shape[1]} frames; features {t_feat:.1f}s, events "
          f"{t_events:.1f}s, rules captions {t_rules:.1f}s")
    print(f"{'measure':<44}{'value':>9}  {'detail'}")
    rows = [("contact F1 within hands (IoU>=0.5)", scores["intra"]),
            ("contact F1 between hands (IoU>=0.5)", between),
            ("  fingertip on other palm", scores["tip_palm"]),
            ("  fingertip on fingertip", scores["tip_tip"]),
            ("  palm on palm", scores["palm_palm"]),
            ("fingertip on other palm, per clip", scores["tip_palm_clip"]),
            ("palm on palm, per clip", scores["palm_palm_clip"])]
    for label, score in rows:
        p, r, f1 = score.prf()
        print(f"{label:<44}{f1:>9.3f}  P {p:.3f} R {r:.3f} (TP {score.tp}, FP {score.fp}, "
              f"FN {score.fn})")
    print(f"{'per-finger flexion state accuracy (frames)':<44}{finger_acc:>9.3f}  per joint "
          f"{joint_acc:.3f}")
    print(f"{'wrist movement direction accuracy (events)':<44}{wrist_event_acc:>9.3f}  "
          f"{wrist_count} intended translations; frame-wise {wrist_frame_acc:.3f}; speed band "
          f"agrees {wrist_speed:.3f}")
    print(f"{'rules captions mention every critical event':<44}{complete / len(names):>9.3f}  "
          f"{complete}/{len(names)} clips, {critical} contact/hyperextension events")
    if args.show_misses:
        for key, score in scores.items():
            for where, pred, true in score.examples:
                print(f"miss {key}: {where} predicted {pred} true {true}")
        for name, missing in failures:
            print(f"caption miss {name}: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
