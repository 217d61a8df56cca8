"""Picking the clips to show from files: named clips of one file, plus a reference beside."""

from __future__ import annotations

import dataclasses

import numpy as np

CAPTION_KEYS = ("left_annotation", "right_annotation", "interaction_annotation")


@dataclasses.dataclass
class ShownClip:
    """One clip to show: a label (entity-path safe), motion (T, 2, 21, 3), three captions."""

    name: str
    motion: np.ndarray
    captions: tuple[str, str, str] = ("", "", "")


def clip_captions(clip: dict) -> tuple[str, str, str]:
    """The first left / right / relation description of a clip dict (empty when missing)."""
    out = []
    for key in CAPTION_KEYS:
        values = clip.get(key)
        out.append(str(values[0]) if values is not None and len(values) else "")
    return tuple(out)


def safe_name(text: str) -> str:
    """A clip name as one entity-path part (letters, digits, `_`, `-`)."""
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in text)
    return safe or "clip"


def pick(clips: dict, names: list[str] | None, path: str) -> list[str]:
    """Clip names to show (default: the first); ValueError naming the file and missing clip."""
    if not clips:
        raise ValueError(f"{path} holds no clips")
    names = names or [next(iter(clips))]
    for name in names:
        if name not in clips:
            raise ValueError(f"{path} has no clip {name!r} (first few: {', '.join(list(clips)[:5])})")
    return names


def load_shown(path: str, clip_names: list[str] | None = None, *, reference: str | None = None,
               reference_clip: str | None = None) -> list[ShownClip]:
    """The chosen clips of `path`, then (with `reference`) the reference clip, named
    'reference': `reference_clip`, else the first chosen name if the reference file has it,
    else its first clip."""
    from handx_jax.data import store

    clips = store.load_any(path)
    names = pick(clips, clip_names, path)
    shown = [ShownClip(safe_name(n), np.asarray(clips[n]["motion"], np.float32), clip_captions(clips[n]))
             for n in names]
    if reference:
        ref_clips = store.load_any(reference)
        ref_name = reference_clip or (names[0] if names[0] in ref_clips else None)
        ref_name = pick(ref_clips, [ref_name] if ref_name else None, reference)[0]
        shown.append(ShownClip("reference", np.asarray(ref_clips[ref_name]["motion"], np.float32),
                               clip_captions(ref_clips[ref_name])))
    return shown
