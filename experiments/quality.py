"""Data quality as a scaling axis: the cpu_quality sweep (or any runs on `<data>_<quality>`
datasets) laid out by size and training-data quality.

    python experiments/quality.py SWEEP_DIR [--out DIR]

One row per run, "<size>, <quality>", sorted by size then quality (high, medium, low): the
held-out loss on the clean test split (`eval/loss`) and R@1, R@3, FID, intra CF1 as
"mean ± 95 %". A run's quality is read from its data directory's name (`..._medium`,
`..._low`; anything else is `high`). Writes quality.md and quality.csv.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import sys

from handx_jax.scaling import runs as runs_lib

COLUMNS = (("R@1", "R@1 ↑"), ("R@3", "R@3 ↑"), ("FID", "FID ↓"), ("C_F1_intra", "intra CF1 ↑"))
ORDER = ("high", "medium", "low")


def _table2():
    spec = importlib.util.spec_from_file_location(
        "experiments_table2", os.path.join(os.path.dirname(os.path.abspath(__file__)), "table2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quality_of(run: runs_lib.Run) -> str:
    directory = os.path.basename(os.path.normpath(str((run.config.get("data") or {}).get("dir") or "")))
    suffix = directory.rsplit("_", 1)[-1]
    return suffix if suffix in ORDER else "high"


def build(sweep_dir: str) -> tuple[str, str]:
    t2 = _table2()
    runs = [r for r in runs_lib.load_runs([sweep_dir]) if r.metric("R@3") is not None]
    if not runs:
        raise SystemExit(f"error: no evaluated runs (eval/R@3 in metrics.jsonl) under {sweep_dir}")
    runs.sort(key=lambda r: (r.x_value("params") or 0, r.size, ORDER.index(quality_of(r))))
    header = "| size, training data | held-out loss ↓ | " + " | ".join(t for _, t in COLUMNS) + " |"
    lines = [f"Data quality ({len(runs)} runs from {sweep_dir}); every run scored on the same clean test split; "
             "mean ± 95 % interval over evaluation replications.", "", header, "|---" * (len(COLUMNS) + 2) + "|"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["size", "quality", "eval_loss"] + [k for k, _ in COLUMNS] + [f"{k}_ci95" for k, _ in COLUMNS])
    for run in runs:
        cells = [(run.metric(k), run.last(f"eval/{k}_ci95")) for k, _ in COLUMNS]
        loss = run.metric("eval/loss")
        lines.append(f"| {run.size}, {quality_of(run)} | " + ("-" if loss is None else f"{loss:.4f}") + " | "
                     + " | ".join(t2._cell(m, c) for m, c in cells) + " |")
        writer.writerow([run.size, quality_of(run), loss] + [m for m, _ in cells] + [c for _, c in cells])
    return "\n".join(lines) + "\n", buf.getvalue()


def main(argv=None) -> int:
    return _table2().table_main(argv, __doc__, build, "quality")


if __name__ == "__main__":
    sys.exit(main())
