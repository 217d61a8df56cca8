"""`handx data synth`: write a synthetic bimanual dataset with ground truth."""

from __future__ import annotations

import argparse
import sys
import time


def cmd_synth(args) -> int:
    from handx_jax.data import synthetic

    if args.num_clips < 0 or args.test_clips is not None and args.test_clips < 0:
        print("error: clip counts must be >= 0", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    test = args.test_clips if args.test_clips is not None else max(1, args.num_clips // 10)
    start = time.perf_counter()
    try:
        paths = synthetic.write_dataset(args.out, args.num_clips, test, frames=args.frames,
                                        seed=args.seed, quality=args.quality,
                                        workers=args.workers, progress=not args.quiet)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    total = args.num_clips + test
    print(f"wrote {args.num_clips} train + {test} test clips ({args.frames} frames, "
          f"quality {args.quality}) to {args.out} in {elapsed:.1f} s "
          f"({total / max(elapsed, 1e-9):.0f} clips/s)")
    for key in sorted(paths):
        print(f"  {key}: {paths[key]}")
    return 0


def add_parser(data_subparsers) -> argparse.ArgumentParser:
    """Add `synth` to the `handx data` subcommands."""
    p = data_subparsers.add_parser(
        "synth", help="generate synthetic bimanual clips with ground truth",
        description="Write HandX-format and .clips.npz train/test files plus ground truth "
                    "({split}_ground_truth.jsonl/.npz) from the choreography grammar.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-clips", "--num_clips", dest="num_clips", type=int, required=True,
                   help="training clips")
    p.add_argument("--test-clips", "--test_clips", dest="test_clips", type=int, default=None,
                   help="test clips (default: num-clips // 10, at least 1)")
    p.add_argument("--frames", type=int, default=60, help="frames per clip (30 fps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", choices=("high", "medium", "low"), default="high",
                   help="medium/low add joint jitter, dropped frames and caption noise")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)
    return p
