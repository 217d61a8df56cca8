"""Offline rule-based reasoner: event JSON -> five `{left, right, two_hands_relation}` triplets.

Follows HandX's annotation rules: two concise, two moderate and one
detailed triplet; contacts and hyperextension always reported; a contact replaces any
proximity statement about the same fingertip; every statement carries a temporal marker;
flexion per finger (joints only for hyperextended MCP with bent PIP/DIP); similar fingers
grouped; repetitions counted; no intent. Wording varies with the seed (several phrasings
per statement) and is deterministic for (seed, clip name).
"""

from __future__ import annotations

import hashlib
import random
import re


from handx_jax.annotate import events as events_lib
from handx_jax.hand import descriptors, skeleton

FINGERS = skeleton.FINGERS
RANK = {"Hyperextended": 0, "Fully extended": 1, "Partially bent": 2, "Fully bent": 3}
STATE_TEXT = {"Hyperextended": "hyperextended", "Fully extended": "fully extended",
              "Partially bent": "partially bent", "Fully bent": "fully bent"}
COUNT = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
CONTACT_WORDS = descriptors.CONTACT_VERBS
SPEED = {"Slow": ("slowly", "gently", "gradually"), "Medium": ("steadily", "at a moderate pace",
         "at medium speed"), "Fast": ("quickly", "rapidly", "fast")}
LEVELS = ("concise", "concise", "moderate", "moderate", "detailed")


def _rng(seed: int, name: str, k: int) -> random.Random:
    """The wording choices of triplet k of clip `name` (Python's generator: a choice among a
    few phrases costs well under a microsecond, a numpy Generator's tens)."""
    digest = hashlib.sha256(f"{seed}|{name}|{k}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def join_names(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


PHRASES = {"repeat": ("repeatedly", "several times over the clip", "again and again"),
           "throughout": ("throughout", "for the whole sequence", "the entire time"),
           "initially": ("initially", "at the beginning", "early on"),
           "mid": ("mid-sequence", "in the middle of the motion", "midway"),
           "end": ("towards the end", "near the end", "late in the sequence")}


def bucket(start: int, end: int, frames: int, count: int = 1) -> str:
    """Temporal class of an interval (or of `count` repeated intervals): a PHRASES key."""
    if count >= 2:
        return "repeat"
    if end - start >= 0.8 * frames:
        return "throughout"
    centre = 0.5 * (start + end)
    if centre < frames / 3:
        return "initially"
    return "mid" if centre < 2 * frames / 3 else "end"


def phrase(key: str, rng) -> str:
    """One wording of a temporal class (other strings, e.g. counts, pass through)."""
    return str(rng.choice(PHRASES[key])) if key in PHRASES else key


def marker(start: int, end: int, frames: int, rng, count: int = 1) -> str:
    """A worded temporal marker of an interval."""
    return phrase(bucket(start, end, frames, count), rng)


def _frames(start: int, end: int) -> str:
    return f"(frames {start}-{end - 1})" if end - start > 1 else f"(frame {start})"


def _squash(text: str) -> str:
    """Every run of whitespace as one space (re.sub(r"\\s+", " ", text), five times faster)."""
    words = text.split()
    out = " ".join(words)
    if words and text[0].isspace():
        out = " " + out
    if text[-1:].isspace():
        out += " "
    return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _sentence(text: str) -> str:
    text = _cap(text.strip())
    return text if text.endswith(".") else text + "."


# ----------------------------------------------------------------------------- hand facts
def _intra_contacts(hand_ev: dict) -> dict[str, list]:
    out = {}
    for key, evs in hand_ev.get("finger_tip_contact", {}).items():
        names = [n.strip().replace("_tip", "") for n in key.split(",")]
        finger = [n for n in names if n != "thumb"]
        out[finger[0] if finger else "thumb"] = events_lib.contact_spans(evs, 0, inclusive=True)
    return out


def _finger_joints(hand_ev: dict) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {f: {} for f in FINGERS}
    for key, evs in hand_ev.get("finger_flexing", {}).items():
        finger, _, joint = key.partition("_")
        if finger in out:
            out[finger][joint] = evs
    return out


def _hyperextensions(joints: dict[str, list]) -> list[tuple[str, int, int, bool]]:
    """Hyperextended joints of one finger: (joint, start, end, distal joints bent)."""
    found = []
    for joint, evs in joints.items():
        for e in evs:
            if "Hyperextended" in (e.get("constant_des"), e.get("start_des"), e.get("end_des")):
                bent = False
                if joint == "mcp":
                    for other in ("pip", "dip"):
                        for o in joints.get(other, []):
                            des = (o.get("constant_des"), o.get("start_des"), o.get("end_des"))
                            if o["start"] < e["end"] and e["start"] < o["end"] and \
                                    any(d in ("Partially bent", "Fully bent") for d in des):
                                bent = True
                found.append((joint, e["start"], e["end"], bent))
    return found


def _finger_movements(joints: dict[str, list]) -> list[dict]:
    """Whole-finger movements: joint state changes of one direction merged over time."""
    moves = []
    for evs in joints.values():
        for e in evs:
            if "start_des" in e:
                d = RANK[e["end_des"]] - RANK[e["start_des"]]
                moves.append({"dir": "bend" if d > 0 else "straighten", "start": e["start"],
                              "end": e["end"], "from": e["start_des"], "to": e["end_des"],
                              "speed": e["v_des"]})
    moves.sort(key=lambda m: m["start"])
    merged: list[dict] = []
    for m in moves:
        last = merged[-1] if merged else None
        if last and last["dir"] == m["dir"] and m["start"] <= last["end"]:
            last["end"] = max(last["end"], m["end"])
            if RANK[m["to"]] * (1 if m["dir"] == "bend" else -1) > \
                    RANK[last["to"]] * (1 if m["dir"] == "bend" else -1):
                last["to"] = m["to"]
            if m["speed"] == "Fast":
                last["speed"] = "Fast"
        else:
            merged.append(dict(m))
    return merged


def _finger_hold(joints: dict[str, list]) -> str | None:
    """Dominant held state of a finger (mean rank of its joints' longest constant states)."""
    ranks = []
    for evs in joints.values():
        consts = [e for e in evs if "constant_des" in e and e["constant_des"] != "Hyperextended"]
        if consts:
            best = max(consts, key=lambda e: e["end"] - e["start"])
            ranks.append(RANK[best["constant_des"]])
    if not ranks:
        return None
    rank = int(round(sum(ranks) / len(ranks)))
    return [k for k, v in RANK.items() if v == max(rank, 1)][0]


def _hand_facts(hand_ev: dict, frames: int) -> dict:
    """What the statements about one hand are built from, computed once per clip."""
    fingers = _finger_joints(hand_ev)
    facts = {"contacts": _intra_contacts(hand_ev), "fingers": fingers,
             "hyper": {f: _hyperextensions(j) for f, j in fingers.items()},
             "moves": {f: _finger_movements(j) for f, j in fingers.items()},
             "hold": {f: _finger_hold(j) for f, j in fingers.items()}}
    groups: dict[tuple, list] = {}  # thumb contacts with the other fingertips
    for finger, ivs in facts["contacts"].items():
        if len(ivs) >= 2:
            key = ("repeat", len(ivs))
        else:
            key = ("once", bucket(ivs[0][0], ivs[0][1], frames))
        groups.setdefault(key, []).append((finger, ivs))
    facts["contact_groups"] = groups
    facts["flexion"] = {detailed: _flexion_groups(facts, frames, detailed)
                        for detailed in (False, True)}
    return facts


def _flexion_groups(facts: dict, frames: int, detailed: bool) -> dict[tuple, list[str]]:
    """Fingers grouped by what they do (a detailed caption also tells moves apart by their
    frames): signature -> fingers."""
    sigs: dict[tuple, list[str]] = {}
    for finger in facts["fingers"]:
        moves = facts["moves"][finger]
        if not moves:
            if facts["hyper"][finger]:
                continue  # reported as hyperextension
            hold = facts["hold"][finger]
            if hold:
                sigs.setdefault(("hold", hold), []).append(finger)
            continue
        bends = sum(m["dir"] == "bend" for m in moves)
        straightens = len(moves) - bends
        if bends >= 2 or straightens >= 2:
            fast = "Fast" if any(m["speed"] == "Fast" for m in moves) else moves[0]["speed"]
            sigs.setdefault(("cycle", max(bends, straightens), fast), []).append(finger)
        elif len(moves) == 2:
            m = moves
            sigs.setdefault(("pair", m[0]["dir"], m[1]["dir"],
                             bucket(m[0]["start"], m[1]["end"], frames)), []).append(finger)
        else:
            m = moves[0]
            sigs.setdefault(("move", m["dir"], m["from"], m["to"], m["speed"],
                             bucket(m["start"], m["end"], frames),
                             (m["start"], m["end"]) if detailed else None),
                            []).append(finger)
    return sigs


def _hand_statements(hand_ev: dict, frames: int, level: str, rng,
                     facts: dict | None = None) -> list[str]:
    """Sentences about one hand, most important first."""
    facts = facts or _hand_facts(hand_ev, frames)
    out = []
    # contacts between the thumb and the other fingertips
    groups = facts["contact_groups"]
    for key, items in groups.items():
        fingers = join_names([f for f, _ in items])
        tips = "tip" if len(items) == 1 else "tips"
        if key[0] == "repeat":
            count = COUNT.get(key[1], f"{key[1]} times")
            text = str(rng.choice([f"the thumb repeatedly taps the {fingers} {tips}, {count}",
                                   f"the thumb repeatedly touches the {fingers} {tips}, "
                                   f"{count} in all",
                                   f"the thumb and the {fingers} {tips} meet {count}, "
                                   "again and again"]))
        else:
            when = phrase(key[1], rng)
            text = str(rng.choice([f"{when}, the thumb touches the {fingers} {tips}",
                                   f"{when}, the thumb tip makes contact with the {fingers} "
                                   f"{tips}",
                                   f"the thumb meets the {fingers} {tips} {when}"]))
        if level == "detailed":
            if len(items) == 1:
                text += " " + ", ".join(_frames(s, e) for s, e in items[0][1])
            else:
                text += " (" + "; ".join(f"{f} " + ", ".join(_frames(s, e)[1:-1] for s, e in ivs)
                                         for f, ivs in items) + ")"
        out.append(_sentence(text))
    # hyperextension, finger-level unless MCP hyperextended over bent distal joints
    fingers = facts["fingers"]
    for finger, joints in fingers.items():
        for joint, s, e, bent in facts["hyper"][finger]:
            when = marker(s, e, frames, rng)
            if joint == "mcp" and bent:
                text = str(rng.choice([
                    f"{when}, the {finger} finger hyperextends at the base knuckle while its "
                    "middle and end joints stay bent",
                    f"{when}, the {finger} finger's base joint is hyperextended and its outer "
                    "joints remain bent"]))
            else:
                text = str(rng.choice([f"{when}, the {finger} finger is hyperextended",
                                       f"the {finger} finger bends backwards into "
                                       f"hyperextension {when}",
                                       f"{when}, the {finger} finger hyperextends"]))
            if level == "detailed":
                text += " " + _frames(s, e)
            out.append(_sentence(text))
    # whole-finger flexion, similar fingers grouped, repetitions counted
    sigs = facts["flexion"][level == "detailed"]
    flex_sentences = []
    for sig, group in sigs.items():
        names = join_names(group)
        noun = "finger" if len(group) == 1 else "fingers"
        if group == ["thumb"]:
            names, noun = "thumb", ""
        if len(group) == 5:
            names, noun = "all", "fingers"
        verb_s = "s" if len(group) == 1 else ""
        if sig[0] == "hold":
            state = STATE_TEXT[sig[1]]
            when = str(rng.choice(["throughout", "for the whole clip", "the entire time"]))
            text = str(rng.choice([f"the {names} {noun} stay{verb_s} {state} {when}",
                                   f"the {names} {noun} remain{verb_s} {state} {when}"]))
            flex_sentences.append((0, _sentence(text)))
        elif sig[0] == "cycle":
            count = COUNT.get(sig[1], f"{sig[1]} times")
            text = str(rng.choice([
                f"the {names} {noun} repeatedly bend{verb_s} and straighten{verb_s}, "
                f"{count} {SPEED[sig[2]][0]}",
                f"the {names} {noun} flex{'es' if len(group) == 1 else ''} and extend{verb_s} "
                f"{count} in a row, {SPEED[sig[2]][1]}"]))
            flex_sentences.append((3, _sentence(text)))
        elif sig[0] == "pair":
            first = "bend" if sig[1] == "bend" else "straighten"
            second = "straighten" if first == "bend" else "bend"
            text = (f"{phrase(sig[3], rng)}, the {names} {noun} {first}{verb_s} and then "
                    f"{second}{verb_s}")
            flex_sentences.append((2, _sentence(text)))
        else:
            _, d, a, b, speed, when, span = sig
            when = phrase(when, rng)
            verb = ("bend" if d == "bend" else "straighten") + verb_s
            text = str(rng.choice([
                f"{when}, the {names} {noun} {verb} {str(rng.choice(SPEED[speed]))} from "
                f"{STATE_TEXT[a]} to {STATE_TEXT[b]}",
                f"the {names} {noun} {verb} from {STATE_TEXT[a]} to {STATE_TEXT[b]} {when}"]))
            if span is not None:
                text += " " + _frames(*span)
            flex_sentences.append((1 + (speed == "Fast"), _sentence(text)))
    flex_sentences.sort(key=lambda x: -x[0])
    keep = {"concise": 1, "moderate": 3, "detailed": len(flex_sentences)}[level]
    out.extend(s for _, s in flex_sentences[:keep])
    if level != "concise":
        out.extend(_spacing_statements(hand_ev, frames, level, rng))
        out.extend(_wrist_statements(hand_ev, frames, level, rng))
    if not out:
        out.append(_sentence(str(rng.choice(["the hand stays still throughout",
                                             "the hand holds its pose for the whole clip"]))))
    return out


def _spacing_statements(hand_ev: dict, frames: int, level: str, rng) -> list[str]:
    out = []
    for pair, evs in hand_ev.get("finger_spacing", {}).items():
        a, b = [p.strip() for p in pair.split(",")]
        for e in evs:
            if "start_des" not in e:
                continue
            when = marker(e["start"], e["end"], frames, rng)
            if e["end_des"] == "Open":
                text = f"{when}, the {a} and {b} fingers spread apart {SPEED[e['v_des']][0]}"
            else:
                text = f"{when}, the {a} and {b} fingers close together {SPEED[e['v_des']][0]}"
            if level == "detailed":
                text += " " + _frames(e["start"], e["end"])
            out.append(_sentence(text))
    return out if level == "detailed" else out[:1]


WRIST_WORDS = {"left-to-right": "to the right", "right-to-left": "to the left",
               "back-to-front": "forward", "front-to-back": "backward",
               "down-to-up": "upward", "up-to-down": "downward"}


def _wrist_statements(hand_ev: dict, frames: int, level: str, rng) -> list[str]:
    out = []
    for axis, evs in hand_ev.get("wrist_trajectory", {}).items():
        dirs = [e["direction"] for e in evs]
        if len(evs) >= 3 and level != "detailed":
            words = join_names(sorted({WRIST_WORDS[d] for d in dirs}))
            out.append(_sentence(f"the wrist moves back and forth ({words}) {len(evs)} times"))
            continue
        for e in evs:
            when = marker(e["start"], e["end"], frames, rng)
            text = str(rng.choice([
                f"{when}, the hand moves {WRIST_WORDS[e['direction']]} {SPEED[e['v_des']][0]}",
                f"the wrist travels {WRIST_WORDS[e['direction']]} {SPEED[e['v_des']][1]} {when}"]))
            if level == "detailed":
                text += " " + _frames(e["start"], e["end"])
            out.append(_sentence(text))
    return out if level == "detailed" else out[:2]


# ------------------------------------------------------------------------- relation facts
def _parse_tip(name: str) -> tuple[str, str]:
    hand, finger, _ = name.strip().split("_")
    return hand, finger


def _relation_facts(rel: dict, frames: int) -> dict:
    """What the statements about the two hands are built from, read once per clip (the
    five triplets differ only in level and wording)."""
    contact_tips: set[tuple[str, str]] = set()
    # fingertip-fingertip contacts across hands, grouped by the left fingertip
    by_left: dict[tuple, list] = {}
    matching: dict[tuple, list] = {}  # same finger of both hands, e.g. palms pressed together
    for key, evs in rel.get("finger_tip_contact", {}).items():
        left, right = [_parse_tip(n) for n in key.split(",")]
        contact_tips.update([left, right])
        ivs = events_lib.contact_spans(evs, frames, inclusive=True)
        when = (bucket(ivs[0][0], ivs[0][1], frames) if len(ivs) == 1
                else f"{COUNT.get(len(ivs), f'{len(ivs)} times')}")
        if left[1] == right[1]:
            matching.setdefault((when, len(ivs)), []).append((left[1], ivs))
        else:
            by_left.setdefault((left[1], when, len(ivs)), []).append((right[1], ivs))
    for (when_key, n), items in matching.items():  # a lone matching pair joins by_left
        if len(items) == 1:
            by_left.setdefault((items[0][0], when_key, n), []).append(items[0])
    # fingertip-palm: contacts (grouped per hand and time), proximity only without contact
    palm_contacts: dict[tuple, list] = {}
    near: dict[tuple, list[str]] = {}
    for key, evs in rel.get("finger_palm_distance", {}).items():
        tip_name, palm_name = [n.strip() for n in key.split(",")]
        hand, finger = _parse_tip(tip_name)
        other = palm_name.split("_")[0]
        cts = events_lib.contact_spans(evs, frames)
        if cts:
            contact_tips.add((hand, finger))
            when = (bucket(cts[0][0], cts[0][1], frames) if len(cts) == 1
                    else COUNT.get(len(cts), f"{len(cts)} times"))
            span = ", ".join(_frames(s, e) for s, e in cts)
            palm_contacts.setdefault((hand, other, when, len(cts)), []).append((finger, span))
        else:
            nears = [e for e in evs if "Near" in (e.get("constant_des"), e.get("end_des"))]
            if nears:
                near.setdefault((hand, other, bucket(nears[0]["start"], nears[-1]["end"],
                                                     frames)), []).append(finger)
    palms = []  # per palm-palm key: contact spans, state changes, longest held state
    for evs in rel.get("palm_palm_distance", {}).values():
        consts = [e for e in evs if "constant_des" in e]
        palms.append((events_lib.contact_spans(evs, frames),
                      [e for e in evs if "start_des" in e],
                      max(consts, key=lambda e: e["end"] - e["start"]) if consts else None))
    return {"matching": matching, "by_left": by_left, "palm_contacts": palm_contacts,
            "near": {k: [f for f in fingers if (k[0], f) not in contact_tips]
                     for k, fingers in near.items()},
            "palms": palms,
            "position": _position_facts(rel.get("palm_palm_relative_position", {}), frames)}


def _relation_statements(rel: dict, frames: int, level: str, rng,
                         facts: dict | None = None) -> list[str]:
    """Sentences about the two hands, contacts first."""
    facts = facts or _relation_facts(rel, frames)
    out = []
    for (when_key, n), items in facts["matching"].items():
        when = phrase(when_key, rng)
        if len(items) == 1:
            continue  # worded with the left fingertip's contacts
        names = join_names([f for f, _ in items])
        if n >= 2:
            text = (f"the left and right {names} fingertips repeatedly touch their "
                    f"counterparts, {when}")
        else:
            text = str(rng.choice([
                f"{when}, the left {names} fingertips touch the matching right fingertips",
                f"the left and right {names} fingertips meet pairwise {when}"]))
        if level == "detailed":
            text += " " + ", ".join(_frames(s, e) for s, e in items[0][1])
        out.append(_sentence(text))
    for (lf, when_key, n), items in facts["by_left"].items():
        when = phrase(when_key, rng)
        rights = join_names([r for r, _ in items])
        tips = "tip" if len(items) == 1 else "tips"
        if n >= 2:
            text = f"the left {lf} tip repeatedly taps the right {rights} {tips}, {when}"
        else:
            text = str(rng.choice([f"{when}, the left {lf} tip touches the right {rights} "
                                   f"{tips}",
                                   f"the left {lf} tip makes contact with the right "
                                   f"{rights} {tips} {when}"]))
        if level == "detailed":
            text += " " + ", ".join(_frames(s, e) for _, ivs in items for s, e in ivs)
        out.append(_sentence(text))
    for (hand, other, when_key, n), items in facts["palm_contacts"].items():
        when = phrase(when_key, rng)
        fingers = [f for f, _ in items]
        one = len(fingers) == 1
        tips = "fingertip" if one else "fingertips"
        touch, press = ("touches", "presses") if one else ("touch", "press")
        names = join_names(fingers)
        if n >= 2:
            text = f"the {hand} {names} {tips} repeatedly {touch} the {other} palm, {when}"
        else:
            text = str(rng.choice([f"{when}, the {hand} {names} {tips} {touch} the {other} palm",
                                   f"the {hand} {names} {tips} {press} against the {other} "
                                   f"palm {when}"]))
        if level == "detailed":
            text += " " + "; ".join(span for _, span in items)
        out.append(_sentence(text))
    if level != "concise":
        for (hand, other, when_key), fingers in facts["near"].items():
            when = phrase(when_key, rng)
            if fingers:
                tips = "fingertip comes" if len(fingers) == 1 else "fingertips come"
                out.append(_sentence(f"{when}, the {hand} {join_names(fingers)} {tips} close "
                                     f"to the {other} palm"))
    # palm-palm
    for cts, moves, held in facts["palms"]:
        for start, end in cts:
            when = marker(start, end, frames, rng)
            text = str(rng.choice([f"{when}, the palms press together",
                                   f"the palms touch each other {when}"]))
            if level == "detailed":
                text += " " + _frames(start, end)
            out.append(_sentence(text))
        if moves and (level != "concise" or not cts):
            for e in moves[: (len(moves) if level == "detailed" else 1)]:
                when = marker(e["start"], e["end"], frames, rng)
                closer = PALM_RANK[e["end_des"]] < PALM_RANK[e["start_des"]]
                verb = "approach each other" if closer else "move apart"
                out.append(_sentence(f"{when}, the hands {verb} {SPEED[e['v_des']][0]}, from "
                                     f"{e['start_des'].lower()} to {e['end_des'].lower()} range"))
        elif not cts and held is not None:
            word = {"Far": "far apart", "Medium": "a moderate distance apart",
                    "Near": "close together", "Contact": "in contact"}[held["constant_des"]]
            when = marker(held["start"], held["end"], frames, rng)
            out.append(_sentence(str(rng.choice([f"the hands stay {word} {when}",
                                                 f"{when}, the hands remain {word}"]))))
    out.extend(_position_statements(facts["position"], frames, level, rng))
    return out


PALM_RANK = {"Contact": 0, "Near": 1, "Medium": 2, "Far": 3}
POSITION_WORDS = {"RIGHT": "to the right of", "LEFT": "to the left of", "FRONT": "in front of",
                  "BACK": "behind", "UP": "above", "DOWN": "below"}
_POSITION = re.compile(r"to the (\w+) of")


def _position_facts(pos: dict, frames: int) -> tuple[list, list]:
    """Steady relative positions (words) and changes ((first, last) words, or (word, event))."""
    steady, changes = [], []
    for axis, evs in pos.items():
        words = []
        for e in evs:
            match = _POSITION.search(e.get("constant_des") or e["end_des"])
            words.append((POSITION_WORDS[match.group(1)] if match else None, e))
        named = [(w, e) for w, e in words if w]
        if not named:
            continue
        if len({w for w, _ in named}) == 1 and \
                sum(e["end"] - e["start"] for _, e in named) >= 0.8 * frames:
            steady.append(named[0][0])
        elif len(named) >= 2 and named[0][0] != named[-1][0]:
            changes.append((named[0][0], named[-1][0]))
        else:
            w, e = max(named, key=lambda x: x[1]["end"] - x[1]["start"])
            changes.append((w, e))
    return steady, changes


def _position_statements(facts: tuple[list, list], frames: int, level: str, rng) -> list[str]:
    steady, changes = facts
    out = []
    if steady:
        when = str(rng.choice(["throughout", "the whole time", "for the entire clip"]))
        out.append(_sentence(str(rng.choice([
            f"the right hand stays {join_names(steady)} the left hand {when}",
            f"{when}, the right hand is positioned {join_names(steady)} the left"]))))
    if level != "concise":
        for first, last in changes:
            if isinstance(last, dict):
                when = marker(last["start"], last["end"], frames, rng)
                out.append(_sentence(f"{when}, the right hand is {first} the left hand"))
            else:
                out.append(_sentence(f"initially the right hand is {first} the left hand, and "
                                     f"towards the end it is {last} it"))
    return out


# ------------------------------------------------------------------------------- captions
def describe(doc: dict, seed: int = 0, name: str = "") -> list[dict[str, str]]:
    """Five caption triplets for one clip's event JSON (deterministic for seed and name)."""
    frames = int(doc["frame_count"])
    facts = [_hand_facts(doc[f"{side}_hand_events"], frames) for side in ("left", "right")]
    relation = _relation_facts(doc["two_hand_relationships"], frames)
    out = []
    for k, level in enumerate(LEVELS):
        rng = _rng(seed, name, k)
        left = _hand_statements(doc["left_hand_events"], frames, level, rng, facts[0])
        right = _hand_statements(doc["right_hand_events"], frames, level, rng, facts[1])
        rel = _relation_statements(doc["two_hand_relationships"], frames, level, rng, relation)
        if not rel:
            rel = [_sentence("the hands do not interact")]
        left, right = [_squash(" ".join(x)).replace(" ,", ",").replace(" .", ".")
                       .replace("The all ", "All ").replace("the all ", "all ")
                       for x in (left, right)]
        out.append({"left": left, "right": right,
                    "two_hands_relation": " ".join(rel)})
    return out


# ------------------------------------------------------------------- critical-event check
def critical_events(doc: dict) -> list[tuple[str, tuple[str, ...], str]]:
    """Contacts and hyperextensions of a clip: (text field, required words, label)."""
    found = []
    for side in ("left", "right"):
        hand_ev = doc[f"{side}_hand_events"]
        for finger in _intra_contacts(hand_ev):
            found.append((side, ("thumb", finger), f"{side} thumb-{finger} contact"))
        for finger, joints in _finger_joints(hand_ev).items():
            if _hyperextensions(joints):
                found.append((side, (finger, "hyperext"), f"{side} {finger} hyperextension"))
    rel = doc["two_hand_relationships"]
    for key in rel.get("finger_tip_contact", {}):
        (lh, lf), (rh, rf) = [_parse_tip(n) for n in key.split(",")]
        found.append(("two_hands_relation", ("left", lf, "right", rf), f"{key} contact"))
    frames = int(doc["frame_count"])
    for key, evs in rel.get("finger_palm_distance", {}).items():
        if events_lib.contact_spans(evs, frames):
            tip, palm = [n.strip() for n in key.split(",")]
            hand, finger = _parse_tip(tip)
            found.append(("two_hands_relation", (hand, finger, palm.split("_")[0] + " palm"),
                          f"{key} contact"))
    for evs in rel.get("palm_palm_distance", {}).values():
        if events_lib.contact_spans(evs, frames):
            found.append(("two_hands_relation", ("palms",), "palm-palm contact"))
    return found


def missing_critical(doc: dict, triplets: list[dict[str, str]]) -> list[str]:
    """Critical events some triplet fails to mention (a sentence naming all its words and a
    contact verb, or 'hyperext' for hyperextension)."""
    missing = []
    for field, words, label in critical_events(doc):
        for k, triplet in enumerate(triplets):
            sentences = re.split(r"(?<=\.)\s+", triplet[field].lower())
            ok = any(all(w in s for w in words) and
                     ("hyperext" in words or any(v in s for v in CONTACT_WORDS))
                     for s in sentences)
            if not ok:
                missing.append(f"triplet {k + 1}: {label}")
    return missing
