"""Plan a whole sweep before launch: one `handx_jax.train.plan` row per scale point.

Points that differ only in data ratio, seed or length compile the same step, so each
distinct model/batch/mesh is compiled once. A point whose per-device memory exceeds the
limit, or whose mesh does not fit, is flagged rather than stopping the sweep's plan.
"""

from __future__ import annotations

import json

from handx_jax import configlib
from handx_jax.scaling import sweeps
from handx_jax.train import plan as plan_lib

# Config fields that do not change the compiled step's shapes or memory.
_IGNORED = {("data", "ratio"), ("data", "dir"), ("data", "num_synthetic_clips"), ("train", "seed"),
            ("train", "steps"), ("train", "warmup_steps"), ("train", "log_every"), ("train", "ckpt_every"),
            ("size",)}


def step_key(config) -> str:
    """What the compiled train step depends on (the config minus run-length and data fields)."""
    d = config.to_dict()
    for path in _IGNORED:
        node = d
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    return json.dumps(d, sort_keys=True, default=str)


def plan_sweep(sweep: sweeps.Sweep, num_devices: int, *, mesh: dict | None = None, topology: str | None = None,
               memory_limit: float, accelerator: str = "H100", overrides: list[str] | None = None) -> list[dict]:
    """One row per point: id, size, params, mesh, per-device bytes, estimate, fits."""
    cache: dict[str, dict] = {}
    rows = []
    for point in sweep.points:
        config = configlib.apply_overrides(sweeps.point_config(sweep, point), list(overrides or []))
        if mesh:
            config = plan_lib.set_mesh(config, mesh)
        key = step_key(config)
        if key not in cache:
            try:
                cache[key] = plan_lib.plan(config, num_devices, topology=topology).report
            except plan_lib.PlanError as err:
                cache[key] = {"error": str(err)}
        report = cache[key]
        row = {"point": point.point_id, "family": point.family, "size": point.label or point.size}
        if "error" in report:
            row.update(fits=False, error=report["error"])
        else:
            d = report["per_device"]
            est = report["estimates"].get(accelerator, {})
            row.update(params=report["params"], mesh=report["mesh"], compute_dtype=report["compute_dtype"],
                       state_bytes=d["params_bytes"] + d["optimizer_bytes"] + d["ema_bytes"],
                       total_bytes=d["total_bytes"], flops_per_step=report["flops_per_step"],
                       step_s=est.get("step_s"), mfu=est.get("mfu"), fits=d["total_bytes"] <= memory_limit)
        rows.append(row)
    return rows


def format_rows(rows: list[dict], memory_limit: float, accelerator: str) -> str:
    """A table, one line per point; points that do not fit say so."""
    gib = plan_lib.GiB
    w = max([28] + [len(r["point"]) for r in rows])
    lines = [f"per-device memory limit {memory_limit / gib:.2f} GiB; estimates for {accelerator}",
             f"{'point':>{w}} | {'params':>9} | {'mesh':>22} | {'state GiB':>9} | {'total GiB':>9} | "
             f"{'step ms':>8} | {'MFU':>6} | fits"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['point']:>{w}} | NO: {r['error']}")
            continue
        lines.append(f"{r['point']:>{w}} | {r['params'] / 1e6:8.2f}M | {plan_lib.format_mesh(r['mesh'].values()):>22} | "
                     f"{r['state_bytes'] / gib:9.3f} | {r['total_bytes'] / gib:9.3f} | {r['step_s'] * 1e3:8.2f} | "
                     f"{r['mfu']:6.1%} | {'yes' if r['fits'] else 'NO'}")
    return "\n".join(lines)
