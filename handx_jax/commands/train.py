"""`handx train --config PATH:ARG --workdir W [--config.a.b=v ...]`: train (or resume) a run."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a task config in a run directory (resumes from its checkpoints)",
        description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="config spec, e.g. configs/diffusion.py:size=XS,runlocal")
    p.add_argument("--workdir", required=True, help="run directory (config.json, metrics.jsonl, checkpoints/)")
    p.set_defaults(func=run)


def ensure_data(config, workdir: str) -> None:
    """When `data.dir` is unset, generate (once) a synthetic dataset into `<workdir>/data`."""
    if config.data.get("dir"):
        if not os.path.isdir(str(config.data.dir)):
            raise FileNotFoundError(f"config.data.dir {config.data.dir!r} is not a directory")
        return
    out = os.path.join(os.path.abspath(workdir), "data")
    from handx_jax.data import manifest

    if not manifest.is_complete(out):  # an interrupted generation is written again
        from handx_jax.data import synthetic

        n = int(config.data.get("num_synthetic_clips", 256))
        num_test = max(n // 8, 8)
        print(f"data.dir is unset: writing {n} synthetic train clips (+{num_test} test) to {out}",
              file=sys.stderr)
        synthetic.write_dataset(out, n, num_test, frames=int(config.data.get("seq_len", 60)), seed=0)
    with config.ignore_type():
        config.data.dir = out


def run(args: argparse.Namespace) -> int:
    from handx_jax import configlib, jax_setup
    from handx_jax.train import distributed

    jax_setup.setup()
    distributed.maybe_initialize_distributed()
    from handx_jax.train import loop

    import contextlib

    import jax

    from handx_jax.train import artifacts, run_lock

    config = loop.add_trainer_defaults(configlib.load_config(args.config))
    config = configlib.apply_overrides(config, list(getattr(args, "config_overrides", []) or []))
    from handx_jax.train import config_checks

    config_checks.check_train_config(config)  # before the workdir or its data are made
    os.makedirs(args.workdir, exist_ok=True)
    try:
        # One writer per run directory, from before the data is written to the end.
        with run_lock.hold(args.workdir) if jax.process_index() == 0 else contextlib.nullcontext():
            if not config.data.get("dir"):
                resolved = config.copy_and_resolve_references()
                with resolved.ignore_type():
                    resolved.data.dir = os.path.join(os.path.abspath(args.workdir), "data")
                loop.check_resume_config(args.workdir, resolved)  # before any data is written
            ensure_data(config, args.workdir)
            result = loop.train(config, args.workdir)
    except run_lock.RunLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        return run_lock.EXIT_LOCKED
    except (loop.ResumeConfigError, artifacts.ArtifactChanged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except loop.NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, default=str))
    return 0


def main(argv=None) -> int:
    """`python -m handx_jax.commands.train --config ... --workdir ...` (same as `handx train`)."""
    from handx_jax import configlib

    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = configlib.split_config_args(argv)
    parser = argparse.ArgumentParser(prog="handx train")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["train"] + argv)
    args.config_overrides = overrides
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
