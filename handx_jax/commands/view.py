"""`handx view FILE.npz [--clip NAME] [--reference FILE.npz]`: a Rerun recording (.rrd) of clips."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("view", help="write a Rerun .rrd to orbit and scrub clips in 3-D",
                              description="Write a Rerun recording of clips of a HandX-format or .clips.npz file "
                                          "(open it with `rerun FILE.rrd`).")
    p.add_argument("path", help="input .npz (HandX format or .clips.npz)")
    p.add_argument("--clip", default=None, help="clip name, or a comma list shown side by side (default: the first)")
    p.add_argument("--reference", default=None, help="another file whose clip is shown beside, as 'reference'")
    p.add_argument("--reference-clip", default=None,
                   help="clip of --reference (default: the same name if it has one, else its first)")
    p.add_argument("--out", default=None, help="output .rrd (default: the input path with .rrd)")
    p.set_defaults(func=run)


def default_out(path: str) -> str:
    stem = path[:-len(".clips.npz")] if path.endswith(".clips.npz") else os.path.splitext(path)[0]
    return stem + ".rrd"


def pick(clips: dict, names: list[str] | None, path: str) -> list[str]:
    """Clip names to show; ValueError naming the file and the missing clip."""
    if not clips:
        raise ValueError(f"{path} holds no clips")
    names = names or [next(iter(clips))]
    for name in names:
        if name not in clips:
            raise ValueError(f"{path} has no clip {name!r} (first few: {', '.join(list(clips)[:5])})")
    return names


def view_clips(path: str, *, clip_names: list[str] | None = None, reference: str | None = None,
               reference_clip: str | None = None, out: str | None = None) -> dict:
    """Load, pick and record; returns `rerun_view.write_recording`'s summary."""
    from handx_jax.data import store
    from handx_jax.viz import rerun_view

    clips = store.load_any(path)
    names = pick(clips, clip_names, path)
    shown = [rerun_view.ViewClip(rerun_view.entity_name(n), clips[n]["motion"], rerun_view.clip_captions(clips[n]))
             for n in names]
    if reference:
        ref_clips = store.load_any(reference)
        ref_name = reference_clip or (names[0] if names[0] in ref_clips else None)
        ref_name = pick(ref_clips, [ref_name] if ref_name else None, reference)[0]
        shown.append(rerun_view.ViewClip("reference", ref_clips[ref_name]["motion"],
                                         rerun_view.clip_captions(ref_clips[ref_name])))
    return rerun_view.write_recording(out or default_out(path), shown)


def run(args: argparse.Namespace) -> int:
    try:
        summary = view_clips(args.path, clip_names=args.clip.split(",") if args.clip else None,
                             reference=args.reference, reference_clip=args.reference_clip, out=args.out)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    frames = ", ".join(f"{n} {t} frames" for n, t in summary["frames"].items())
    print(f"wrote {summary['path']} ({frames}); open it with: rerun {summary['path']}")
    return 0
