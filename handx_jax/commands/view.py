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


def load_names(path: str) -> list[str]:
    from handx_jax.data import store

    return list(store.load_any(path))


def view_clips(path: str, *, clip_names: list[str] | None = None, reference: str | None = None,
               reference_clip: str | None = None, out: str | None = None) -> dict:
    """Load, pick and record; returns `rerun_view.write_recording`'s summary."""
    from handx_jax.viz import clips, rerun_view

    shown = clips.load_shown(path, clip_names, reference=reference, reference_clip=reference_clip)
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
