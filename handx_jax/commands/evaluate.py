"""`handx evaluate` (score a trained run) and `handx evaluator train` (fit the evaluator)."""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_EVALUATOR_CONFIG = "configs/evaluator.py"


def register(subparsers) -> None:
    e = subparsers.add_parser(
        "evaluate", help="evaluate a generator run (any model family) with a trained evaluator (Table-2 style metrics)",
        description="Evaluate the newest checkpoint of a run: writes W/eval/metrics.json, W/eval/table.md "
                    "and appends eval/<metric> keys to W/metrics.jsonl.")
    e.add_argument("--workdir", required=True, help="run directory of the model to evaluate")
    e.add_argument("--evaluator", required=True, help="evaluator run directory (from `handx evaluator train`)")
    e.add_argument("--num-samples", type=int, default=None, help="test clips to evaluate (default: all)")
    e.add_argument("--replications", type=int, default=20, help="replications per figure (default 20)")
    e.add_argument("--steps", type=int, default=None, help="diffusion: sampling steps (default 50)")
    e.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance (diffusion default 2.5; a family without guidance refuses it)")
    e.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a sampling option of the run's model family (repeatable), e.g. temperature=0.8")
    e.add_argument("--mm-texts", type=int, default=100, help="texts for MultiModality (default 100)")
    e.add_argument("--mm-generations", type=int, default=30, help="generations per MultiModality text (default 30; 0 = skip)")
    e.add_argument("--split", default="test", help="split to evaluate on (default test)")
    e.add_argument("--data", default=None, help="dataset directory (default: the run's config data.dir)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=64,
                   help="samples per compiled sampling batch (default 64; raise it on an accelerator)")
    e.add_argument("--no-project", dest="project", action="store_false",
                   help="skip the row '<model>, projected' (the same samples after kinematic projection: constant "
                        "bones, joint limits, with the raw-to-projected distance; on by default)")
    e.add_argument("--refine-contacts", action="store_true",
                   help="add the row '<model>, projected + stated contacts': the projected samples with the "
                        "contacts their captions state closed (reads the captions; off by default)")
    e.add_argument("--no-text-check", dest="text_check", action="store_false",
                   help="skip the text-dependence row (samples from captions shuffled across clips, scored "
                        "against the true ones; on by default)")
    from handx_jax.eval.metrics import DEFAULT_PROTOCOL, PROTOCOLS

    e.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=sorted(PROTOCOLS),
                   help="handx (default): HandX's evaluation code, R-precision in batches of 64, "
                        "empty precision/recall 0; humanml3d: batches of 32, empty precision/recall 1")
    e.add_argument("--step", type=int, default=None,
                   help="checkpoint step to evaluate (default: the newest; an earlier one writes eval/step_<N>/)")
    e.set_defaults(func=run_evaluate_locked)

    ev = subparsers.add_parser("evaluator", help="train the contrastive text-motion evaluator",
                               description="Evaluator commands.")
    sub = ev.add_subparsers(dest="evaluator_command", metavar="ACTION")
    t = sub.add_parser("train", help="train (or resume) an evaluator on a dataset",
                       description="Train the TMR-style evaluator of configs/evaluator.py; copies the "
                                   "dataset's tokenizer and statistics into the run directory.")
    t.add_argument("--data", default=None, help="dataset directory (default: synthetic data in <workdir>/data)")
    t.add_argument("--workdir", required=True, help="evaluator run directory")
    t.add_argument("--config", default=DEFAULT_EVALUATOR_CONFIG, help="config spec (default configs/evaluator.py)")
    t.set_defaults(func=run_evaluator_train)
    ev.set_defaults(func=lambda args: (ev.print_help(), 2)[1])


def run_evaluate_locked(args: argparse.Namespace) -> int:
    """`handx evaluate` holding the run directory's lock (it writes W/eval and W/metrics.jsonl):
    refused at once while another process (a trainer, another evaluation) writes there."""
    from handx_jax.train import run_lock

    if not os.path.isdir(args.workdir):
        return run_evaluate(args)  # reports the missing directory
    try:
        with run_lock.hold(args.workdir, what="handx evaluate"):
            return run_evaluate(args)
    except run_lock.RunLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        return run_lock.EXIT_LOCKED


def run_evaluate(args: argparse.Namespace) -> int:
    from handx_jax import jax_setup

    jax_setup.setup()
    from handx_jax.eval import driver, report

    for flag, value, low in (("--replications", args.replications, 1), ("--steps", 1 if args.steps is None else args.steps, 1),
                             ("--mm-generations", args.mm_generations, 0), ("--batch-size", args.batch_size, 1)):
        if value < low:
            print(f"error: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    try:
        from handx_jax import families

        result = driver.evaluate_run(
            args.workdir, args.evaluator, num_samples=args.num_samples, replications=args.replications,
            steps=args.steps, guidance=args.guidance, seed=args.seed, split=args.split,
            mm_texts=args.mm_texts, mm_generations=args.mm_generations, data_dir=args.data, step=args.step,
            batch_size=args.batch_size, protocol=args.protocol, text_check=args.text_check,
            family_options=families.parse_options(args.option), project=args.project,
            refine_contacts=args.refine_contacts)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.markdown_table(result))
    for row, check in result.get("text_dependence", {}).items():
        verdict = "follows its captions" if check["follows_text"] else "does NOT clearly follow its captions"
        print(f"text dependence of {row}: R@3 {check['R@3']:.3f} ± {check['R@3_ci95']:.3f} with its captions, "
              f"{check['R@3_shuffled']:.3f} ± {check['R@3_shuffled_ci95']:.3f} with captions shuffled across clips: {verdict}")
    timing = result.get("timing_s", {})
    print("wall seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items())
          + f" (total {sum(timing.values()):.1f})")
    paths = result["paths"]
    print(f"wrote {paths['metrics']}, {paths['table']} and a line of {paths['log']}")
    return 0


def train_evaluator(config, workdir: str, data_dir: str | None = None) -> dict:
    """Train the evaluator in `workdir` on `data_dir` (synthetic when None); copy its assets."""
    from handx_jax.commands.train import ensure_data
    from handx_jax.data import normalization
    from handx_jax.eval import evaluator as evaluator_lib
    from handx_jax.text import tokenizer as tokenizer_lib
    from handx_jax.train import loop

    if data_dir:
        with config.ignore_type():
            config.data.dir = os.path.abspath(data_dir)
    os.makedirs(workdir, exist_ok=True)
    ensure_data(config, workdir)
    data_dir = str(config.data.dir)
    tokenizer_lib.ensure_tokenizer(data_dir, int(config.model.vocab_size))
    normalization.load_or_compute_stats(data_dir, "joint_pos")
    result = loop.train(config, workdir)
    evaluator_lib.copy_assets(workdir, data_dir)
    return result


def run_evaluator_train(args: argparse.Namespace) -> int:
    from handx_jax import configlib, jax_setup

    jax_setup.setup()
    from handx_jax.train import loop

    config = configlib.load_config(args.config)
    config = configlib.apply_overrides(config, list(getattr(args, "config_overrides", []) or []))
    if config.get("family") != "evaluator":
        print(f"error: {args.config} is not an evaluator config (family {config.get('family')!r})", file=sys.stderr)
        return 2
    if args.data and not os.path.isdir(args.data):
        print(f"error: --data {args.data!r} is not a directory", file=sys.stderr)
        return 2
    try:
        result = train_evaluator(config, args.workdir, args.data)
    except loop.NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, default=str))
    return 0
