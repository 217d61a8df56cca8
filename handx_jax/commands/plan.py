"""`handx plan` and `handx sweep plan`: compile a run's train step ahead of time for N devices
and print its memory per device, FLOPs and step-time estimates (docs/plan.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="compile a config's train step ahead of time for N devices: memory, FLOPs, estimates",
        description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="config spec, e.g. configs/diffusion.py:size=L")
    _device_args(p)
    p.set_defaults(func=run)


def register_sweep(sweep_subparsers) -> None:
    """`handx sweep plan SWEEP --devices N`: one plan row per scale point."""
    p = sweep_subparsers.add_parser("plan", help="plan every point of a sweep for N devices (memory per device)")
    p.add_argument("sweep", help="sweep config: configs/sweeps/tiny.py[:arg] or a bare name (tiny)")
    _device_args(p)
    p.add_argument("--memory-gib", type=float, default=None,
                   help="flag points needing more per-device memory (default: the HBM of --accelerator)")
    p.add_argument("--accelerator", default=None,
                   help="accelerator of the estimates and the default memory limit (default: the --topology's "
                        "chip, else H100)")
    p.set_defaults(func=run_sweep)


def _device_args(p) -> None:
    p.add_argument("--devices", type=int, default=None,
                   help="number of devices (fake CPU devices unless --topology; default: all visible)")
    p.add_argument("--mesh", action="append", default=None,
                   help="data=N,fsdp=N,tensor=N (repeat to compare meshes; 'auto' = two meshes that fit; "
                        "default: the config's mesh)")
    p.add_argument("--topology", default=None,
                   help="TPU topology name (e.g. v5e:4x4) compiled through jax.experimental.topologies (needs libtpu)")
    p.add_argument("--json", default=None, help="also write the plan(s) as JSON here")


def _argv(args: argparse.Namespace, head: list[str]) -> list[str]:
    """The command line of `args` (to re-run it in a fresh process)."""
    out = list(head)
    for name in ("devices", "topology", "json", "memory_gib", "accelerator"):
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    for mesh in args.mesh or []:
        out += ["--mesh", mesh]
    return out + [f"--config.{o}" for o in args.config_overrides or []]


def prepare_devices(num_devices: int | None, topology: str | None) -> bool:
    """Make `num_devices` fake CPU devices available before JAX starts its backends.

    Returns False when JAX already runs with fewer devices (the caller re-runs the command
    in a fresh process)."""
    if not num_devices and not topology:
        return True
    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except Exception:  # private API moved: assume started
        started = "jax" in sys.modules
    if topology:
        # libtpu describes the chips; none is attached, so JAX's own backend stays the CPU
        # (with libtpu installed it would otherwise look for TPU chips first).
        if not started:
            os.environ["JAX_PLATFORMS"] = "cpu"
        # Compiling only: several processes may load libtpu at once (else its lockfile refuses).
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        return True
    if not started:
        flags = re.sub(rf"{DEVICE_FLAG}=\d+", "", os.environ.get("XLA_FLAGS", ""))
        os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_FLAG}={int(num_devices)}".strip()
        os.environ["JAX_PLATFORMS"] = "cpu"
        return True
    import jax

    return jax.device_count() >= num_devices


@contextlib.contextmanager
def _no_cache_for_topology(topology: str | None):
    """A compile-only TPU executable cannot be read back from the persistent compile cache
    (that needs an attached TPU), so a topology plan keeps it off while it runs."""
    import jax

    before = jax.config.jax_enable_compilation_cache
    if topology:
        jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", before)


def _rerun(argv: list[str]) -> int:
    env = dict(os.environ)
    flags = re.sub(rf"{DEVICE_FLAG}=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    return subprocess.call([sys.executable, "-m", "handx_jax.cli", *argv], env=env)


def _meshes(args, config, num_devices: int) -> list[dict]:
    from handx_jax.train import plan as plan_lib

    if not args.mesh:
        return [{}]
    out = []
    for text in args.mesh:
        out += plan_lib.default_meshes(config, num_devices) if text == "auto" else [plan_lib.parse_mesh(text)]
    return out


def _load(spec: str, overrides: list[str]):
    from handx_jax import configlib

    config = configlib.load_config(spec)
    return configlib.apply_overrides(config, list(overrides or []))


def run(args: argparse.Namespace) -> int:
    with _no_cache_for_topology(args.topology):
        return _run(args)


def run_sweep(args: argparse.Namespace) -> int:
    with _no_cache_for_topology(args.topology):
        return _run_sweep(args)


def _run(args: argparse.Namespace) -> int:
    if not prepare_devices(args.devices, args.topology):
        return _rerun(_argv(args, ["plan", "--config", args.config]))
    from handx_jax import jax_setup
    from handx_jax.train import plan as plan_lib

    jax_setup.setup()
    try:
        config = _load(args.config, args.config_overrides)
        devices = plan_lib.target_devices(args.devices, args.topology)
        reports, too_big = [], []
        for mesh in _meshes(args, config, len(devices)):
            try:
                result = plan_lib.plan(plan_lib.set_mesh(config, mesh), len(devices), topology=args.topology)
            except plan_lib.DoesNotFit as err:  # the other meshes may fit: go on
                too_big.append(str(err))
                continue
            reports.append(result.report)
            del result
    except (plan_lib.PlanError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if reports:
        print(plan_lib.format_reports(reports, [reports[0]["accelerator"]] if reports[0].get("accelerator") else None))
    for text in too_big:
        print(f"error: {text}")
    _write_json(args.json, {"config": args.config, "overrides": list(args.config_overrides or []), "plans": reports,
                            "does_not_fit": too_big})
    return 1 if too_big else 0


def _run_sweep(args: argparse.Namespace) -> int:
    if not prepare_devices(args.devices, args.topology):
        return _rerun(_argv(args, ["sweep", "plan", args.sweep]))
    from handx_jax import jax_setup
    from handx_jax.scaling import sweep_plan, sweeps
    from handx_jax.train import plan as plan_lib

    jax_setup.setup()
    try:
        if args.accelerator is None:
            args.accelerator = plan_lib.parse_topology(args.topology)[2] if args.topology else "H100"
        if args.accelerator not in plan_lib.ACCELERATORS:
            raise plan_lib.PlanError(f"--accelerator {args.accelerator!r}: choose one of {', '.join(plan_lib.ACCELERATORS)}")
        sweep = sweeps.load_sweep(args.sweep)
        devices = plan_lib.target_devices(args.devices, args.topology)
        if len(args.mesh or []) > 1 or "auto" in (args.mesh or []):
            raise plan_lib.PlanError("--mesh: a sweep plan takes one explicit mesh (data=..,fsdp=..,tensor=..) "
                                     "for every point, or none for each point's config mesh")
        meshes = [plan_lib.parse_mesh(m) for m in args.mesh or []]
        limit = (args.memory_gib * plan_lib.GiB if args.memory_gib is not None
                 else plan_lib.ACCELERATORS[args.accelerator].hbm_bytes)
        rows = sweep_plan.plan_sweep(sweep, len(devices), mesh=meshes[0] if meshes else None,
                                     topology=args.topology, memory_limit=limit, accelerator=args.accelerator,
                                     overrides=list(args.config_overrides or []))
    except (plan_lib.PlanError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(sweep_plan.format_rows(rows, limit, args.accelerator))
    _write_json(args.json, {"sweep": args.sweep, "memory_limit_bytes": limit, "rows": rows})
    return 1 if any(not r["fits"] for r in rows) else 0


def _write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(tmp, path)
    print(f"wrote {path}")
