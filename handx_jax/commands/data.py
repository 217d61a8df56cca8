"""`handx data ...`: validate, convert, build (TFDS), stats; `synth` when that module exists."""

from __future__ import annotations

import argparse
import importlib
import os
import sys


def _split_files(path: str) -> list[str]:
    """A file as given; a directory expands to its train/test split files."""
    if not os.path.isdir(path):
        return [path]
    from handx_jax.data import store
    found = []
    for split in ("train", "test"):
        try:
            found.append(store.find_split(path, split))
        except FileNotFoundError:
            pass
    return found or [path]


def cmd_validate(args) -> int:
    from handx_jax.data import validate
    failed = False
    files = [f for p in args.paths for f in _split_files(p)]
    for path in files:
        report = validate.validate_file(path)
        count = len(report.problems)
        status = "OK" if not count else f"{count} problem{'s' if count > 1 else ''}"
        print(f"{path}: {report.clips} clips, {report.frames} frames, "
              f"{report.annotations} annotations: {status}")
        for problem in report.problems[:args.max_problems]:
            print(f"  {problem}")
        if len(report.problems) > args.max_problems:
            print(f"  ... and {len(report.problems) - args.max_problems} more")
        failed |= bool(report.problems)
    return 1 if failed else 0


def cmd_convert(args) -> int:
    from handx_jax.data import handx_format, store, validate
    try:
        clips = store.load_any(args.src)
    except (handx_format.HandXFormatError, store.ClipStoreError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    problems = validate.validate_clips(clips, args.src)
    if problems and not args.allow_invalid:
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        print(f"error: {args.src}: {len(problems)} problems; fix them or pass --allow_invalid",
              file=sys.stderr)
        return 1
    to_clips = args.to == "clips" or (args.to is None and args.dst.endswith(store.CLIPS_SUFFIX))
    if to_clips:
        store.save_clips(args.dst, clips)
    else:
        handx_format.save_handx(args.dst, clips)
    kind = "pickle-free .clips.npz" if to_clips else "HandX release format"
    print(f"wrote {len(clips)} clips to {args.dst} ({kind})")
    return 0


def cmd_build(args) -> int:
    from handx_jax.data import tfds_builder
    out = args.out or os.path.join(args.src, "tfds")
    try:
        # An existing build is kept only when it was made from the current source files.
        stale = not tfds_builder.is_current(args.src, out)
        with tfds_builder.build_lock(out):
            path = tfds_builder.build(args.src, out, overwrite=args.overwrite or stale)
    except (tfds_builder.InvalidSourceError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    builder = tfds_builder.load_builder(path)
    splits = ", ".join(f"{name}: {info.num_examples} clips"
                       for name, info in builder.info.splits.items())
    print(f"TFDS dataset at {path} ({splits})")
    return 0


def cmd_stats(args) -> int:
    from handx_jax.data import normalization
    path = normalization.stats_path(args.data_dir, args.representation)
    if args.force and os.path.exists(path):
        os.unlink(path)
    try:
        stats = normalization.load_or_compute_stats(args.data_dir, args.representation,
                                                    split=args.split)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}: {stats.mean.shape[0]} features over {stats.count} frames; "
          f"mean |mean| {abs(stats.mean).mean():.4g}, std range "
          f"{stats.std.min():.4g}..{stats.std.max():.4g}, "
          f"{int((stats.std == 1.0).sum())} floored to 1")
    return 0


def register(subparsers) -> None:
    """Add `handx data` and its subcommands."""
    parser = subparsers.add_parser("data", help="validate, convert and build datasets")
    data_sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = data_sub.add_parser("validate", help="check clip files; exit 1 on any problem")
    p.add_argument("paths", nargs="+", help="clip files or data directories")
    p.add_argument("--max_problems", type=int, default=50, help="problems listed per file")
    p.set_defaults(func=cmd_validate)

    p = data_sub.add_parser("convert", help="convert between HandX format and .clips.npz")
    p.add_argument("src", help="a HandX-format npz or .clips.npz")
    p.add_argument("dst", help="output; *.clips.npz is pickle-free, else HandX format")
    p.add_argument("--to", choices=("clips", "handx"), default=None,
                   help="output format (default: from the DST name)")
    p.add_argument("--allow_invalid", action="store_true",
                   help="convert even when validation finds problems")
    p.set_defaults(func=cmd_convert)

    p = data_sub.add_parser("build", help="build the TFDS (array_record) dataset")
    p.add_argument("--src", required=True, help="directory with train/test clip files")
    p.add_argument("--out", default=None, help="TFDS data_dir (default SRC/tfds)")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild even when the existing build matches the source files")
    p.set_defaults(func=cmd_build)

    p = data_sub.add_parser("stats", help="normalisation statistics over the train split")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--representation", default="joint_pos_w_scalar_rot",
                   choices=("joint_pos", "joint_pos_w_scalar_rot"))
    p.add_argument("--split", default="train")
    p.add_argument("--force", action="store_true", help="recompute existing statistics")
    p.set_defaults(func=cmd_stats)

    try:
        synth = importlib.import_module("handx_jax.commands.synth")
    except ModuleNotFoundError as err:
        if err.name != "handx_jax.commands.synth":
            raise
    else:
        synth.add_parser(data_sub)


def main(argv: list[str] | None = None) -> int:
    """Run `handx data` directly (python -m handx_jax.commands.data ...)."""
    parser = argparse.ArgumentParser(prog="handx")
    register(parser.add_subparsers())
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
