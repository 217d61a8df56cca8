"""`handx tokenize --fsq RUN --data DIR`: every split's motion token ids, written next to the data."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenize", help="encode every split of a dataset with a trained FSQ tokenizer",
        description="Writes DIR/motion_tokens/<tokenizer key>/<split>.npz (pickle-free: names, codes padded "
                    "with -1, lengths, meta_json) for each split present; splits already written by the same "
                    "tokenizer from the same file are kept.")
    p.add_argument("--fsq", required=True, help="FSQ tokenizer run directory (trained with configs/fsq.py)")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of the tokenizer (default: newest)")
    p.add_argument("--splits", default="train,val,test", help="comma list of splits (absent ones are skipped)")
    p.add_argument("--batch-size", type=int, default=256, help="clips per compiled batch (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from handx_jax import jax_setup

    jax_setup.setup()
    from handx_jax.autoregressive import tokens
    from handx_jax.autoregressive.fsq_run import FsqRun

    if not os.path.isdir(args.data):
        print(f"error: --data {args.data!r} is not a directory", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        fsq_run = FsqRun(args.fsq, step=args.step)
        print(f"tokenizer {fsq_run.key}: {fsq_run.codebook_size} codes (levels {list(fsq_run.levels)}), "
              f"x{fsq_run.downsample} downsampling, step {fsq_run.step}")
        tokens.tokenize_dataset(fsq_run, args.data, splits=tuple(s for s in args.splits.split(",") if s),
                                batch_size=args.batch_size, progress=True)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
