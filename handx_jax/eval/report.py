"""Evaluation outputs: replication summaries, the Table-2-style Markdown table, log lines.

A result is `{"rows": {setting: {metric: summary}}, "meta": {...}}` where a summary is
`{"mean", "std", "ci95", "values"}` over replications (95 % interval = 1.96 std / sqrt(N)).
"""

from __future__ import annotations

import json
import math
import os
from typing import Iterable, Sequence

import numpy as np

# Table columns in the paper's Table 2 order, then the physical metrics. (key, header, digits)
COLUMNS = (
    ("R@1", "R@1 ↑", 3), ("R@2", "R@2 ↑", 3), ("R@3", "R@3 ↑", 3), ("FID", "FID ↓", 3),
    ("Diversity", "Div →", 3), ("MM-Dist", "MM-Dist ↓", 3), ("MultiModality", "MModality ↑", 3),
    ("C_P_intra", "intra P ↑", 3), ("C_R_intra", "intra R ↑", 3), ("C_F1_intra", "intra F1 ↑", 3),
    ("C_P_inter", "inter P ↑", 3), ("C_R_inter", "inter R ↑", 3), ("C_F1_inter", "inter F1 ↑", 3),
    ("Cf_P_intra", "intra frame P ↑", 3), ("Cf_R_intra", "intra frame R ↑", 3),
    ("Cf_P_inter", "inter frame P ↑", 3), ("Cf_R_inter", "inter frame R ↑", 3),
    ("C_timing_intra", "intra timing err. frames ↓", 1), ("C_timing_inter", "inter timing err. frames ↓", 1),
    ("Penetration_mm", "Pen. mm ↓", 2), ("Jitter", "Jitter m/s³ ↓", 1), ("BoneDev_mm", "Bone dev. mm ↓", 3),
    ("JointLimit", "Limit viol. ↓", 4), ("MPJPE_mm", "MPJPE mm", 1), ("ProjMPJPE_mm", "raw→projected mm", 2),
)
METRIC_KEYS = tuple(k for k, _, _ in COLUMNS)


def summarize(values: Sequence[float]) -> dict:
    """Mean, std (population, as the HumanML3D code) and 95 % half-interval of replications."""
    arr = np.asarray([v for v in values], np.float64)
    arr = arr[~np.isnan(arr)] if np.isnan(arr).any() and not np.isnan(arr).all() else arr  # undefined replications
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return {"mean": float("nan"), "std": float("nan"), "ci95": float("nan"), "values": [float(v) for v in arr]}
    std = float(arr.std())
    return {"mean": float(arr.mean()), "std": std, "ci95": 1.96 * std / math.sqrt(arr.size),
            "values": [float(v) for v in arr]}


def summarize_replications(per_rep: Iterable[dict]) -> dict:
    """[{metric: value} per replication] -> {metric: summary}."""
    per_rep = list(per_rep)
    keys = [k for k in per_rep[0]] if per_rep else []
    return {k: summarize([r[k] for r in per_rep]) for k in keys}


def _cell(summary: dict | None, digits: int) -> str:
    if not summary or not math.isfinite(summary.get("mean", float("nan"))):
        return "-"
    return f"{summary['mean']:.{digits}f} ± {summary['ci95']:.{digits}f}"


def markdown_table(result: dict, columns=COLUMNS) -> str:
    """Markdown table, one row per setting (ground truth first), mean ± 95 % interval; the
    header names the evaluation protocol recorded in the result's meta."""
    rows = result["rows"]
    protocol = result.get("meta", {}).get("protocol")
    first = f"setting ({protocol} protocol)" if protocol else "setting"
    header = f"| {first} | " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|---|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics.get(k), d) for k, _, d in columns) + " |")
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_json(path: str, obj) -> None:
    """Write JSON atomically (temp name, then rename); NaN becomes the string "nan"."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_jsonable(obj), f, indent=2)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def log_record(result: dict, row: str, step: int) -> dict:
    """The metrics.jsonl line for one row: `step` plus `eval/<metric>` means (and `_ci95`)."""
    record = {"step": int(step)}
    for key, summary in result["rows"][row].items():
        if math.isfinite(summary["mean"]):
            record[f"eval/{key}"] = summary["mean"]
            record[f"eval/{key}_ci95"] = summary["ci95"]
    record["eval/replications"] = int(result["meta"].get("replications", 0))
    record["eval/num_samples"] = int(result["meta"].get("num_samples", 0))
    return record


def append_metrics(workdir: str, record: dict) -> str:
    """Append one line to `<workdir>/metrics.jsonl` (flushed and synced)."""
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(_jsonable(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    from handx_jax.train import metrics_log  # the same line into the run's TensorBoard / W&B

    metrics_log.log_side_record(workdir, record)
    return path
