"""`handx text tokenizer|tower|embed`: the dataset's caption tokenizer, its frozen text tower,
and the tower's precomputed caption embeddings."""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_TOWER_CONFIG = "configs/text_tower.py"


def register(subparsers) -> None:
    p = subparsers.add_parser("text", help="text tools (caption tokenizer)", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="text_command", metavar="SUBCOMMAND")
    t = sub.add_parser("tokenizer", help="train the SentencePiece tokenizer of a dataset directory")
    t.add_argument("--src", required=True, help="dataset directory holding the train split (HandX npz or .clips.npz)")
    t.add_argument("--vocab-size", type=int, default=2000, help="upper bound on the vocabulary (default 2000)")
    t.add_argument("--force", action="store_true", help="retrain even if DIR/spm.model exists")
    t.set_defaults(func=run_tokenizer)
    w = sub.add_parser("tower", help="train (or resume) the dataset's frozen text tower, then embed its captions",
                       description="Train the contrastive text tower of a dataset (configs/text_tower.py, resumable) "
                                   "and write DIR/text_embeddings/<key>.npz: every distinct caption of every split, "
                                   "per role. Generators with model.text=tower condition on these embeddings.")
    w.add_argument("--data", required=True, help="dataset directory")
    w.add_argument("--workdir", default=None, help="tower run directory (default DIR/text_tower)")
    w.add_argument("--config", default=DEFAULT_TOWER_CONFIG, help=f"config spec (default {DEFAULT_TOWER_CONFIG})")
    w.add_argument("--batch-size", type=int, default=512, help="captions per embedding batch (default 512)")
    w.set_defaults(func=run_tower)
    e = sub.add_parser("embed", help="(re-)embed a dataset's captions with a trained text tower",
                       description="Write or complete DIR/text_embeddings/<key>.npz with a trained tower "
                                   "(e.g. after adding clips); captions already embedded are kept.")
    e.add_argument("--data", required=True, help="dataset directory")
    e.add_argument("--tower", default=None, help="tower run directory (default DIR/text_tower)")
    e.add_argument("--batch-size", type=int, default=512, help="captions per embedding batch (default 512)")
    e.set_defaults(func=run_embed)
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


def _check_dir(flag: str, path: str) -> bool:
    if not os.path.isdir(path):
        print(f"error: {flag} {path!r} is not a directory", file=sys.stderr)
        return False
    return True


def run_tower(args: argparse.Namespace) -> int:
    from handx_jax import configlib, jax_setup

    jax_setup.setup()
    from handx_jax.train import loop, text_tower

    if not _check_dir("--data", args.data):
        return 2
    config = configlib.apply_overrides(configlib.load_config(args.config), list(args.config_overrides or []))
    if config.get("family") != "text_tower":
        print(f"error: {args.config} is not a text tower config (family {config.get('family')!r})", file=sys.stderr)
        return 2
    workdir = args.workdir or text_tower.default_tower_dir(args.data)
    try:
        result = text_tower.train_tower(config, workdir, args.data)
        path = text_tower.embed_dataset(workdir, args.data, batch_size=args.batch_size)
    except (loop.NonFiniteLossError, text_tower.StaleTextEmbeddings, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"tower": os.path.abspath(workdir), "embeddings": path, "final_step": result.get("final_step")}))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from handx_jax import jax_setup

    jax_setup.setup()
    from handx_jax.train import text_tower

    if not _check_dir("--data", args.data):
        return 2
    tower = args.tower or text_tower.default_tower_dir(args.data)
    try:
        path = text_tower.embed_dataset(tower, args.data, batch_size=args.batch_size)
    except (text_tower.StaleTextEmbeddings, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
