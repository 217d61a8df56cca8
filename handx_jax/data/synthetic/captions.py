"""Ground-truth captions written from a clip's program (not from measured features).

Five `(left, right, relation)` triplets per clip: 1-2 concise, 3-4 moderate, 5 detailed,
in HandX's caption style ("Thumb extended, other fingers bent; thumb contacts ...").
Wording varies per clip (synonyms, temporal markers, sentence order) from the clip's own
random stream. With `noise_rate` > 0 (lower data quality) some triplets are corrupted:
a finger name or direction swapped, or a statement dropped.
"""

from __future__ import annotations

import numpy as np

from handx_jax.hand import skeleton

FINGERS = skeleton.FINGERS
COUNT = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
LEVELS = ("concise", "concise", "moderate", "moderate", "detailed")
POSE_TEXT = {
    "open": ("an open hand", "an open palm", "fingers spread open"),
    "fist": ("a fist", "a closed fist", "a clenched fist"),
    "point": ("a pointing pose", "a point", "a pointing gesture"),
    "pinch": ("a pinch", "a pinch grip", "a pinching pose"),
    "thumbs_up": ("a thumbs-up", "a thumbs-up pose", "thumb up with the fingers curled"),
    "v_sign": ("a V shape", "a V sign", "a V with two fingers"),
}
SPEED_ADV = {"slow": ("slowly", "gradually"), "medium": ("steadily", "at a moderate pace"),
             "fast": ("quickly", "rapidly", "briskly")}


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _join(items) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _fingers_text(fingers, rng) -> str:
    fingers = sorted(fingers)
    if fingers == [0, 1, 2, 3, 4]:
        return _pick(rng, ("all fingers", "the whole hand", "every finger"))
    if fingers == [1, 2, 3, 4]:
        return _pick(rng, ("the four fingers", "all fingers but the thumb", "the fingers"))
    names = [FINGERS[f] for f in fingers]
    if len(names) == 1:
        return f"the {names[0]}" + ("" if names[0] == "thumb" else " finger")
    return "the " + _join(names) + " fingers"


def when(start: int, end: int, frames: int, rng, repeat: int = 1) -> str:
    """Temporal marker of an interval."""
    if end - start >= 0.8 * frames:
        return _pick(rng, ("throughout", "the whole time", "across the clip"))
    centre = 0.5 * (start + end)
    if centre < frames / 3:
        return _pick(rng, ("initially", "at the start", "first", "early on"))
    if centre < 2 * frames / 3:
        return _pick(rng, ("mid-sequence", "in the middle", "then", "midway"))
    return _pick(rng, ("towards the end", "finally", "at the end", "late in the clip"))


def _verb(fingers, plural: str, singular: str) -> str:
    """Verb agreeing with a finger group ("the index finger bends", "the fingers bend")."""
    return singular if len(fingers) == 1 else plural


def _finger_phrase(act: dict, frames: int, rng, level: str) -> str | None:
    kind = act["action"]
    t = when(act["start"], act["end"], frames, rng)
    speed = act.get("speed")
    adv = (" " + _pick(rng, SPEED_ADV[speed])) if speed and level == "detailed" else ""
    if kind == "bend":
        state = act["state"].replace("_", " ")
        who = _fingers_text(act["fingers"], rng)
        if level == "concise":
            return f"{who} {_verb(act['fingers'], 'bend', 'bends')} {t}"
        bend, curl, flex = (_verb(act["fingers"], v, v + "es" if v == "flex" else v + "s")
                            for v in ("bend", "curl", "flex"))
        return _pick(rng, (f"{t}, {who} {bend}{adv} until {state}",
                           f"{who} {curl}{adv} to {state} {t}",
                           f"{who} {flex}{adv} {t}, ending {state}"))
    if kind == "straighten":
        who = _fingers_text(act["fingers"], rng)
        if level == "concise":
            return f"{who} {_verb(act['fingers'], 'straighten', 'straightens')} {t}"
        straighten, extend, opens = (_verb(act["fingers"], v, s) for v, s in (
            ("straighten", "straightens"), ("extend", "extends"), ("open", "opens")))
        from_state = act["from_state"].replace("_", " ")
        return _pick(rng, (f"{t}, {who} {straighten}{adv} from {from_state}",
                           f"{who} {extend}{adv} {t}",
                           f"{who} {opens} out{adv} {t}"))
    if kind == "clench":
        n = COUNT.get(act["times"], f"{act['times']} times")
        if level == "concise":
            return _pick(rng, (f"makes a fist {n}", f"clenches {n}"))
        return _pick(rng, (f"{t}, the hand clenches into a fist and opens {n}",
                           f"the fingers close into a fist and release {n} {t}",
                           f"{t}, clench and release {n}"))
    if kind == "tap":
        if act.get("times", 0) < 1:
            return None
        f = FINGERS[act["finger"]]
        n = COUNT.get(act["times"], f"{act['times']} times")
        if level == "concise":
            return _pick(rng, (f"thumb taps {f} tip", f"thumb touches the {f} tip"))
        rep = "repeatedly, " if act["times"] > 1 else ""
        return _pick(rng, (f"{t}, the thumb {rep}taps the {f} fingertip {n}",
                           f"thumb contacts the {f} tip {n} {t}",
                           f"{t}, thumb and {f} tips meet {n}"))
    if kind == "spread_close":
        n = COUNT.get(act["times"], f"{act['times']} times")
        if level == "concise":
            return _pick(rng, ("fingers spread and close", "spreads the fingers"))
        return _pick(rng, (f"{t}, the fingers spread apart and close {n}",
                           f"fingers fan out and come together {n} {t}",
                           f"{t}, spread then close the fingers, {n}"))
    if kind == "hyperextend":
        who = _fingers_text(act["fingers"], rng)
        if level == "concise":
            return f"{who} {_verb(act['fingers'], 'hyperextend', 'hyperextends')}"
        bend, hyper, arch = (_verb(act["fingers"], v, s) for v, s in (
            ("bend", "bends"), ("hyperextend", "hyperextends"), ("arch", "arches")))
        return _pick(rng, (f"{t}, {who} {bend} backwards into hyperextension",
                           f"{who} {hyper} at the base knuckle {t}",
                           f"{t}, {who} {arch} back, hyperextended"))
    if kind == "relation_pose":
        if act["pose"] == "flat":
            return _pick(rng, (f"{t}, the hand opens flat", "fingers held straight and together",
                               f"{t}, the hand flattens, fingers extended"))
        f = FINGERS[act["finger"]]
        return _pick(rng, (f"{t}, points with the {f} finger", f"{f} finger extended to point",
                           f"{t}, the {f} finger points, the others curled"))
    if kind == "hold":
        pose = act["pose"]
        text = _pick(rng, POSE_TEXT[pose])
        extra = ""
        if pose in ("point", "pinch") and level != "concise":
            f = FINGERS[act["finger"]]
            extra = f" with the {f} finger" if pose == "point" else f", thumb on the {f} tip"
        if level == "concise":
            return _pick(rng, (f"forms {text}", f"holds {text}"))
        return _pick(rng, (f"{t}, forms {text}{extra} and holds it",
                           f"shapes {text}{extra} {t}",
                           f"{t}, the hand holds {text}{extra}"))
    return None


ROT_TEXT = {"roll": ("rotates about the forearm", "twists at the wrist", "turns the palm"),
            "pitch": ("tilts the hand", "bends at the wrist", "flexes the wrist"),
            "yaw": ("swings the hand sideways", "turns the hand sideways",
                    "deviates at the wrist")}


def _wrist_phrase(act: dict, frames: int, rng, level: str) -> str | None:
    kind = act["action"]
    t = when(act["start"], act["end"], frames, rng)
    if kind == "translate":
        word = act["word"]
        adv = " " + _pick(rng, SPEED_ADV[act["speed"]])
        if level == "concise":
            return f"moves {word}"
        dist = f" about {round(act['distance'] * 100)} cm" if level == "detailed" else ""
        return _pick(rng, (f"{t}, the wrist moves {word}{adv}{dist}",
                           f"the hand travels {word}{dist}{adv} {t}",
                           f"{t}, shifts {word}{adv}{dist}"))
    if kind == "rotate":
        verb = _pick(rng, ROT_TEXT[act["axis"]])
        if level == "concise":
            return verb
        deg = f" by about {abs(round(act['angle'] / 5) * 5)} degrees" if level == "detailed" \
            else ""
        return f"{t}, {verb}{deg}"
    n = COUNT.get(act["times"], f"{act['times']} times")
    if act["axis"] == "roll":
        return f"{t}, the wrist twists back and forth {n}" if level != "concise" \
            else "wrist twists back and forth"
    axis = {"x": "side to side", "y": "forward and back", "z": "up and down"}[act["axis"]]
    if level == "concise":
        return f"waves {axis}"
    return _pick(rng, (f"{t}, the hand oscillates {axis} {n}",
                       f"moves {axis} {n} {t}"))


def _hand_text(lay, side: str, frames: int, rng, level: str) -> str:
    acts = lay.actions[side]
    finger = [a for a in acts if "fingers" in a or a["action"] in
              ("clench", "tap", "spread_close", "hold", "relation_pose")]
    wrist = [a for a in acts if a not in finger]
    phrases = [p for p in (_finger_phrase(a, frames, rng, level) for a in finger) if p]
    wphrases = [p for p in (_wrist_phrase(a, frames, rng, level) for a in wrist) if p]
    if level == "concise":
        # contacts are always reported; otherwise the first one or two statements
        taps = [p for a, p in zip(finger, phrases) if a["action"] == "tap"]
        chosen = taps[:1] + [p for p in phrases if p not in taps][:1]
        chosen += wphrases[:1] if len(chosen) < 2 else []
        phrases, wphrases = chosen, []
    parts = phrases + wphrases
    if not parts:
        parts = [_pick(rng, ("Hand stays still", "Fingers stay relaxed", "Hand holds still"))]
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _relation_text(program: dict, lay, frames: int, rng, level: str) -> str:
    rel = program["relation"]
    kind = rel["type"]
    if kind == "far_apart":
        text = _pick(rng, ("hands stay far apart", "the hands remain well apart",
                           "hands keep a wide distance"))
        if level != "concise":
            text += _pick(rng, ("; left hand on the left", "; right hand positioned to the right",
                                ", side by side"))
    elif kind == "mirror":
        text = _pick(rng, ("hands mirror each other", "both hands move in mirror symmetry",
                           "the hands do the same, mirrored"))
    elif kind == "approach_separate":
        who = {"both": "the hands", "left": "the left hand", "right": "the right hand"}[
            rel["mover"]]
        ev = [e for e in lay.events["two_hands"] if e["family"] == "palm_palm_distance"][0]
        t = when(ev["start"], ev["end"], frames, rng)
        if rel["variant"] == "approach":
            text = _pick(rng, (f"{t}, {who} move closer together", f"{who} approach {t}",
                               f"{t}, {who} draw together"))
        elif rel["variant"] == "separate":
            text = _pick(rng, (f"{t}, {who} move apart", f"{who} separate {t}",
                               f"{t}, {who} pull away from each other"))
        else:
            text = _pick(rng, (f"{who} come together then separate",
                               f"{who} approach, then move apart again"))
        if level == "concise":
            text = {"approach": "hands approach", "separate": "hands separate",
                    "approach_then_separate": "hands approach and separate"}[rel["variant"]]
    elif kind == "swap_vertical":
        first = rel["left_starts"]
        other = "below" if first == "above" else "above"
        text = _pick(rng, (f"left hand starts {first} the right, then they swap heights",
                           f"the hands swap vertical position; left goes from {first} to {other}",
                           f"left hand moves {'down' if first == 'above' else 'up'} past the "
                           f"right hand, swapping heights"))
        if level == "concise":
            text = "hands swap heights"
    elif kind == "palms_together":
        ev = [e for e in lay.events["two_hands"] if e["family"] == "palm_palm_distance"][0]
        t = when(ev["start"], ev["end"], frames, rng)
        text = _pick(rng, (f"{t}, palms press together, fingertips touching",
                           f"palms and fingertips meet {t}",
                           f"{t}, the hands come together palm to palm, fingers aligned"))
        if rel.get("release"):
            text += _pick(rng, (", then separate", " and part again", ", then pull apart"))
        if level == "concise":
            text = "palms together"
    elif kind == "tip_to_palm":
        f = FINGERS[rel["finger"]]
        other = "right" if rel["hand"] == "left" else "left"
        ev = [e for e in lay.events["two_hands"] if e["family"] == "finger_palm_distance"][0]
        t = when(ev["start"], ev["end"], frames, rng)
        text = _pick(rng, (f"{t}, the {rel['hand']} {f} fingertip touches the {other} palm",
                           f"{rel['hand']} {f} finger contacts the {other} palm {t}",
                           f"{t}, the {rel['hand']} hand's {f} tip presses into the {other} "
                           "palm"))
        if level == "concise":
            text = f"{rel['hand']} {f} tip touches {other} palm"
    else:
        f = FINGERS[rel["finger"]]
        n = rel.get("times_done", rel["times"])
        count = COUNT.get(n, f"{n} times")
        text = _pick(rng, (f"the {f} fingertips of both hands tap together {count}",
                           f"{f} tips meet {count}" + (", repeatedly" if n > 1 else ""),
                           f"both {f} fingertips touch {count}"))
        if level == "concise":
            text = f"{f} tips touch"
    if level == "detailed":
        sep = rel["separation"]
        if kind in ("far_apart", "mirror", "swap_vertical"):
            text += f"; about {round(sep * 100)} cm between the wrists"
    return text[:1].upper() + text[1:] + "."


def _corrupt(text: str, rng) -> str:
    """A plausible annotation error: wrong finger, wrong direction, or a truncated text."""
    choice = int(rng.integers(3))
    words = text.split(" ")
    if choice == 0:
        for i, w in enumerate(words):
            if w.strip(",.;") in FINGERS:
                words[i] = w.replace(w.strip(",.;"), _pick(rng, FINGERS))
                return " ".join(words)
    if choice == 1:
        swaps = {"left": "right", "right": "left", "up": "down", "down": "up",
                 "closer": "apart", "apart": "closer"}
        for i, w in enumerate(words):
            if w.strip(",.;") in swaps:
                words[i] = w.replace(w.strip(",.;"), swaps[w.strip(",.;")])
                return " ".join(words)
    parts = text.split("; ")
    return (parts[0].rstrip(".") + ".") if len(parts) > 1 else text


def clip_captions(program: dict, lay, rng, noise_rate: float = 0.0) -> dict[str, list[str]]:
    """Five triplets as the three HandX annotation lists."""
    frames = lay.frames
    out = {"left_annotation": [], "right_annotation": [], "interaction_annotation": []}
    for level in LEVELS:
        texts = [_hand_text(lay, "left", frames, rng, level),
                 _hand_text(lay, "right", frames, rng, level),
                 _relation_text(program, lay, frames, rng, level)]
        if noise_rate > 0 and rng.random() < noise_rate:
            k = int(rng.integers(3))
            texts[k] = _corrupt(texts[k], rng)
        for key, text in zip(out, texts):
            out[key].append(text)
    return out
