"""`handx sweep launch|status` and `handx scaling fit`: scale sweeps and scaling-law fits."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    sweep = subparsers.add_parser("sweep", help="launch a scale sweep and watch its status")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND")

    p = sweep_sub.add_parser("launch", help="run (local) or write scripts for (slurm, tpu) a sweep")
    p.add_argument("sweep", help="sweep config: configs/sweeps/tiny.py[:arg] or a bare name (tiny)")
    p.add_argument("--out", required=True, help="sweep directory (runs/, status/, logs/, sweep.json)")
    p.add_argument("--backend", choices=("local", "slurm", "tpu"), default="local")
    p.add_argument("--dry-run", action="store_true", help="print the plan and commands; run and write nothing")
    p.add_argument("--no-evaluate", action="store_true", help="train only (no evaluator, no evaluation)")
    p.add_argument("--stop-on-failure", action="store_true", help="local: stop at the first failed point")
    g = p.add_argument_group("slurm")
    g.add_argument("--nodes", type=int, default=1, help="nodes per point")
    g.add_argument("--tasks-per-node", type=int, default=1, help="processes per node (one per GPU is usual)")
    g.add_argument("--gpus-per-node", type=int, default=0)
    g.add_argument("--time", default="24:00:00", help="time limit per point")
    g.add_argument("--partition", default=None)
    g.add_argument("--account", default=None)
    g.add_argument("--max-parallel", type=int, default=None, help="array throttle (%%N)")
    g.add_argument("--setup", default="", help="shell lines run before each job (module load, venv)")
    g = p.add_argument_group("tpu")
    g.add_argument("--tpu-name", default="handx-pod")
    g.add_argument("--zone", default="us-central2-b")
    g.add_argument("--project", default=None)
    g.add_argument("--repo-dir", default="~/handx-jax", help="checkout path on the TPU VMs")
    p.set_defaults(func=cmd_launch)

    p = sweep_sub.add_parser("status", help="per point: stage, step / total, losses, elapsed and time left")
    p.add_argument("out", help="sweep directory")
    p.add_argument("--metrics", default="R@3,FID", help="comma list of eval metrics to show")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--watch", type=float, nargs="?", const=10.0, default=None, metavar="SECONDS",
                   help="redraw every SECONDS (default 10) until every point is done or failed")
    p.set_defaults(func=cmd_status)
    from handx_jax.commands import plan as plan_command

    plan_command.register_sweep(sweep_sub)
    sweep.set_defaults(func=lambda args: _help(sweep))

    scaling = subparsers.add_parser("scaling", help="fit and plot scaling laws from run directories")
    scaling_sub = scaling.add_subparsers(dest="scaling_command", metavar="SUBCOMMAND")
    p = scaling_sub.add_parser("fit", help="fit a scaling law to run directories")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or directories searched for them (e.g. a sweep's runs/)")
    p.add_argument("--metric", required=True, help="eval metric key, e.g. R@3, FID (reads eval/<KEY>)")
    p.add_argument("--x", choices=("params", "flops", "data", "samples"), default="flops")
    p.add_argument("--form", choices=("loglinear", "power", "power2d", "power2d_log", "isoflop"), default="loglinear",
                   help="power2d_log: L(N, D) fitted on log L with non-negative coefficients (preferred for losses)")
    p.add_argument("--data-x", choices=("unique", "samples"), default="unique",
                   help="power2d forms: D as unique training clips (runs repeat data) or samples seen "
                        "(runs see each example at most once)")
    p.add_argument("--out", required=True, help="output directory for fits.json/csv/md and plots")
    p.add_argument("--name", default="fits", help="output file stem")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates for the 95 %% intervals")
    p.add_argument("--loss", choices=("huber", "soft_l1", "linear"), default="huber",
                   help="robust loss (linear = ordinary least squares)")
    p.add_argument("--dataset-size", type=float, default=None,
                   help="training clips at data ratio 1 (for --x data on real data, e.g. 84729)")
    p.add_argument("--goal", choices=("min", "max"), default=None,
                   help="isoflop: whether the metric is better low or high (default from its name)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fit)
    p = scaling_sub.add_parser(
        "study", help="IsoFLOP study of a compute-budget sweep: optima, frontier, extrapolation, metrics")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or a sweep's runs/ directory")
    p.add_argument("--out", required=True, help="output directory (study.json, study.md, figures)")
    p.add_argument("--holdout", default="largest",
                   help="budget left out of the fits and predicted: 'largest' (default), a FLOP count, or 'none'")
    p.add_argument("--metrics", default="R@3,FID", help="comma list of eval metrics fitted on the frontier")
    p.add_argument("--size", choices=("blocks", "params"), default="blocks",
                   help="model size N: transformer-block parameters (default; embeddings and input/output/text "
                        "projections left out) or every parameter")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates for the 95 %% intervals")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_study)
    scaling.set_defaults(func=lambda args: _help(scaling))


def _help(parser) -> int:
    parser.print_help()
    return 2


def cmd_launch(args: argparse.Namespace) -> int:
    from handx_jax.scaling import launch, sweeps

    try:
        sweep = sweeps.load_sweep(args.sweep)
        manifest = launch.plan_sweep(sweep, args.out, evaluate=not args.no_evaluate)
    except (ValueError, KeyError, FileNotFoundError, AttributeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"sweep {manifest['name']}: {len(manifest['points'])} points -> {manifest['out']}")
    if args.backend == "local":
        if args.dry_run:
            _print_plan(manifest)
            return 0
        from handx_jax.train import run_lock

        try:
            with run_lock.hold(manifest["out"], what=f"handx sweep launch {manifest['name']}"):
                launch.write_manifest(manifest)
                counts = launch.run_local(manifest, keep_going=not args.stop_on_failure)
        except run_lock.RunLockedError as err:
            print(f"error: {err}", file=sys.stderr)
            return run_lock.EXIT_LOCKED
        except launch.StageInterrupted as err:
            print(f"interrupted: {err}; relaunch to resume", file=sys.stderr)
            return 130
        print(launch.format_status(launch.sweep_status(manifest["out"])))
        from handx_jax.report import html as html_report  # points, curves and fits in one page

        print(f"report: {html_report.write_sweep_report(manifest['out'])}")
        return 1 if counts["failed"] else 0
    if args.backend == "slurm":
        scripts = launch.slurm_scripts(
            manifest, nodes=args.nodes, tasks_per_node=args.tasks_per_node,
            gpus_per_node=args.gpus_per_node, time_limit=args.time, partition=args.partition,
            account=args.account, max_parallel=args.max_parallel, setup=args.setup)
        subdir, how = "slurm", f"bash {os.path.join(manifest['out'], 'slurm', 'submit.sh')}"
    else:
        scripts = {"tpu.sh": launch.tpu_script(manifest, tpu_name=args.tpu_name, zone=args.zone,
                                               project=args.project, repo_dir=args.repo_dir)}
        subdir, how = "tpu", f"bash {os.path.join(manifest['out'], 'tpu', 'tpu.sh')}"
    if args.dry_run:
        _print_plan(manifest)
        for name, text in scripts.items():
            print(f"\n# ---- {name}\n{text}")
        return 0
    launch.write_manifest(manifest)
    if args.backend == "slurm":  # every directory the scripts name exists before submission
        for directory in launch.slurm_output_dirs(scripts):
            os.makedirs(directory, exist_ok=True)
    for path in launch.write_scripts(manifest, scripts, subdir):
        print(f"wrote {path}")
    print(f"submit with: {how}")
    print(f"status: handx sweep status {manifest['out']} --watch; report when done: handx report {manifest['out']}")
    return 0


def _print_plan(manifest: dict) -> None:
    from handx_jax.scaling import launch

    data = manifest["data"]
    print(f"data: {data['dir']}" + (f" (synthetic, {data['num_train']} train clips)" if data["synthetic"] else ""))
    if manifest["evaluator"]["train"]:
        print(f"evaluator: {launch.command_line(manifest['evaluator']['train'])}")
    if (manifest.get("text_tower") or {}).get("train"):
        print(f"text tower: {launch.command_line(manifest['text_tower']['train'])}")
    for codebook, entry in (manifest.get("fsq") or {}).items():
        print(f"FSQ tokenizer (codebook {codebook}): {launch.command_line(entry['train'])}")
    for point in manifest["points"]:
        budget = f", budget {point['compute_budget']:.3g} FLOPs" if point["compute_budget"] else ""
        print(f"\n[{point['id']}] {point['steps']} steps x batch {point['batch_size']}{budget}")
        print(f"  {launch.command_line(point['train'])}")
        if point["evaluate"]:
            print(f"  {launch.command_line(point['evaluate'])}")


def cmd_status(args: argparse.Namespace) -> int:
    from handx_jax.scaling import progress

    metrics = tuple(m for m in args.metrics.split(",") if m)
    try:
        if args.watch is not None:
            return progress.watch(args.out, interval=max(args.watch, 0.5), metrics=metrics)
        state = progress.sweep_progress(args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"evaluator": state["evaluator"], "points": state["points"],
                          "eta_seconds": state["eta_seconds"], "stale": state.get("stale", [])}, indent=2))
    else:
        print(progress.format_progress(state, metrics))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from handx_jax.scaling import analysis

    try:
        result, table = analysis.fit_runs(
            args.runs, metric=args.metric, x=args.x, form=args.form, n_boot=args.bootstrap,
            seed=args.seed, loss=args.loss, dataset_size=args.dataset_size, goal=args.goal,
            data_x=args.data_x)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    paths = analysis.write_outputs(result, table, args.out, args.name)
    print(analysis.params_markdown(result, table))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from handx_jax.scaling import study as study_lib

    holdout = None if args.holdout == "none" else args.holdout
    metrics = tuple(m for m in args.metrics.split(",") if m)
    try:
        study = study_lib.analyse(args.runs, holdout=holdout, metrics=metrics, n_boot=args.bootstrap, seed=args.seed,
                                  size=args.size)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    paths = study_lib.write_study(study, args.out)
    print(study_lib.markdown(study))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0
