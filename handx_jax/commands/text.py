"""`handx text tokenizer --src DIR [--vocab-size N]`: train DIR/spm.model on DIR's train captions."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("text", help="text tools (caption tokenizer)", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="text_command", metavar="SUBCOMMAND")
    t = sub.add_parser("tokenizer", help="train the SentencePiece tokenizer of a dataset directory")
    t.add_argument("--src", required=True, help="dataset directory holding the train split (HandX npz or .clips.npz)")
    t.add_argument("--vocab-size", type=int, default=2000, help="upper bound on the vocabulary (default 2000)")
    t.add_argument("--force", action="store_true", help="retrain even if DIR/spm.model exists")
    t.set_defaults(func=run_tokenizer)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_tokenizer(args: argparse.Namespace) -> int:
    from handx_jax.data import store
    from handx_jax.text import tokenizer

    if not os.path.isdir(args.src):
        print(f"error: --src {args.src!r} is not a directory", file=sys.stderr)
        return 2
    if args.vocab_size < 8:
        print(f"error: --vocab-size {args.vocab_size} is too small (>= 8)", file=sys.stderr)
        return 2
    path = tokenizer.tokenizer_path(args.src)
    if os.path.isfile(path) and not args.force:
        print(f"{path} exists (use --force to retrain)")
        return 0
    clips = store.load_any(store.find_split(args.src, "train"))
    captions = tokenizer.split_captions(clips)
    path = tokenizer.train_tokenizer(captions, os.path.join(args.src, "spm"), args.vocab_size)
    size = tokenizer.load_tokenizer(path).get_piece_size()
    print(f"wrote {path}: {size} pieces from {len(captions)} captions of {len(clips)} clips")
    return 0
