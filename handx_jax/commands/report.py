"""`handx report RUN_DIR|SWEEP_DIR`: one self-contained HTML report."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="self-contained HTML report of a run or a sweep",
                              description="Write RUN_DIR/report.html (loss curves, evaluation tables with intervals, "
                                          "sample renders) or SWEEP_DIR/report.html (points, curves, scaling fits).")
    p.add_argument("path", help="run directory (metrics.jsonl) or sweep directory (sweep.json)")
    p.add_argument("--out", default=None, help="output .html (default: PATH/report.html)")
    p.add_argument("--samples", default=None, help="run: a samples .npz whose first clips are rendered into the report")
    p.add_argument("--num-renders", type=int, default=2, help="with --samples: clips to render (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from handx_jax.report import html

    kwargs = {"samples": args.samples, "num_renders": args.num_renders} if args.samples else {}
    try:
        path = html.write_report(args.path, args.out, **kwargs)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
