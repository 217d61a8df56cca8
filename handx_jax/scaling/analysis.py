"""Run directories -> fit -> fits.json, fits.csv, fits.md and PNG/PDF plots.

This is what `handx scaling fit` calls; it reads only each run's `config.json` and
`metrics.jsonl` (through `runs.py`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys

from handx_jax.scaling import fit as fit_lib
from handx_jax.scaling import plots, runs as runs_lib

# Metrics that get better as they fall; everything else (R@k, F1, precision, recall,
# accuracy) is taken to get better as it rises. Used by the IsoFLOP optimum.
LOWER_IS_BETTER = ("fid", "mm-dist", "mm_dist", "mmdist", "loss", "jitter", "penetration",
                   "error", "mpjpe", "violation", "deviation")


def metric_goal(metric: str) -> str:
    name = metric.lower().split("/")[-1]
    return "min" if any(token in name for token in LOWER_IS_BETTER) else "max"


def fit_runs(run_paths: list[str], *, metric: str, x: str, form: str, n_boot: int = 500,
             seed: int = 0, loss: str = "huber", dataset_size: float | None = None,
             goal: str | None = None, data_x: str = "unique") -> tuple[fit_lib.FitResult, runs_lib.Table]:
    """Load runs and fit one form. For power2d(_log), x is the model-size axis and data the
    other: unique training clips (`data_x="unique"`) or samples seen (`"samples"`, for runs
    that see each example at most once); for isoflop, x must be `params` and the compute
    budget is each run's `flops_seen`."""
    if form not in fit_lib.FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(fit_lib.FORMS)}")
    runs = runs_lib.load_runs(run_paths)
    if not runs:
        raise ValueError(f"no run directories (config.json + metrics.jsonl) under {run_paths}")
    if data_x not in ("unique", "samples"):
        raise ValueError(f"data_x must be 'unique' or 'samples', got {data_x!r}")
    data_kind = "data" if data_x == "unique" else "samples"
    also = {"power2d": (data_kind,), "power2d_log": (data_kind,), "isoflop": ("flops", "samples")}.get(form, ())
    if form in ("power2d", "power2d_log", "isoflop") and x != "params":
        raise ValueError(f"--form {form} needs --x params (got {x!r})")
    table = runs_lib.collect(runs, metric, x, also=also, dataset_size=dataset_size)
    for line in table.skipped:
        print(f"skipped run: {line}", file=sys.stderr)
    if len(table.runs) == 0:
        raise ValueError(f"no run under {run_paths} has both {x!r} and metric {metric!r}")
    common = dict(metric=metric, labels=table.labels, n_boot=n_boot, seed=seed)
    if form == "loglinear":
        result = fit_lib.fit_loglinear(table.x, table.y, x_name=x, loss=loss, **common)
    elif form == "power":
        result = fit_lib.fit_power(table.x, table.y, x_name=x, loss=loss, **common)
    elif form == "power2d":
        result = fit_lib.fit_power2d(table.x, table.extra[data_kind], table.y, loss=loss,
                                     x_name=f"params,{data_kind}", **common)
    elif form == "power2d_log":
        result = fit_lib.fit_power2d_log(table.x, table.extra[data_kind], table.y, loss=loss,
                                         x_name=f"params,{data_kind}", **common)
    else:
        result = fit_lib.fit_isoflop(table.x, table.extra["flops"], table.y,
                                     goal=goal or metric_goal(metric), samples=table.extra["samples"], **common)
    result.extra["runs"] = [r.path for r in table.runs]
    if table.skipped:
        result.extra["skipped"] = table.skipped
    return result, table


def write_outputs(result: fit_lib.FitResult, table: runs_lib.Table, out_dir: str,
                  name: str = "fits") -> dict[str, str]:
    """fits.json, a CSV and a Markdown table of the parameters, and PNG + PDF plots."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    paths["json"] = _write(os.path.join(out_dir, f"{name}.json"),
                           json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    paths["csv"] = _write(os.path.join(out_dir, f"{name}.csv"), params_csv(result))
    paths["md"] = _write(os.path.join(out_dir, f"{name}.md"), params_markdown(result, table))
    prefix = os.path.join(out_dir, name)
    labels = table.labels
    if result.form in ("loglinear", "power"):
        figures = plots.plot_curve(result, table.x, table.y, labels, prefix,
                                   saturated=_as_list(result.flags.get("saturated")),
                                   outliers=result.flags.get("outliers") or [])
    elif result.form in ("power2d", "power2d_log"):
        data = table.extra.get("data", table.extra.get("samples"))
        figures = plots.plot_power2d(result, table.x, data, table.y, labels, prefix)
    else:
        figures = plots.plot_isoflop(result, table.x, table.extra["flops"], table.y, labels, prefix)
    paths["png"], paths["pdf"] = figures
    return paths


def _as_list(value) -> list[str]:
    return list(value) if isinstance(value, (list, tuple)) else []


def params_csv(result: fit_lib.FitResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["form", "metric", "x", "param", "value", "ci95_low", "ci95_high", "n_runs"])
    for key, value in result.params.items():
        low, high = result.ci95.get(key, [float("nan")] * 2)
        writer.writerow([result.form, result.metric, result.x, key, f"{value:.6g}",
                         f"{low:.6g}", f"{high:.6g}", result.n_runs])
    if result.r is not None:
        writer.writerow([result.form, result.metric, result.x, "r", f"{result.r:.6g}", "", "",
                         result.n_runs])
    return buf.getvalue()


def params_markdown(result: fit_lib.FitResult, table: runs_lib.Table) -> str:
    lines = [f"# {result.form} fit of {result.metric} against {result.x} ({result.n_runs} runs)", "",
             "| parameter | value | 95 % interval |", "|---|---|---|"]
    for key, value in result.params.items():
        low, high = result.ci95.get(key, [float("nan")] * 2)
        lines.append(f"| {key} | {value:.4g} | [{low:.4g}, {high:.4g}] |")
    if result.r is not None:
        lines.append(f"| Pearson r | {result.r:.3f} | |")
    lines += ["", "Flags: " + json.dumps(result.flags), "", "| run | label | x | metric |",
              "|---|---|---|---|"]
    for run, xv, yv in zip(table.runs, table.x, table.y):
        lines.append(f"| {run.name} | {run.label} | {xv:.4g} | {yv:.4g} |")
    return "\n".join(lines) + "\n"


def _write(path: str, text: str) -> str:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
