"""Paper Table 2 layout from a sweep directory, with our numbers.

    python experiments/table2.py SWEEP_DIR [--out DIR]

Rows: ground truth (from the first evaluated run's eval/metrics.json), then one row per
run "<data %>, <layers> layers" sorted by data ratio and size, each "mean ± 95 %" from
the run's last `eval/<metric>` and `eval/<metric>_ci95` log keys; the paper's own
numbers follow for comparison. Writes table2.md and table2.csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from handx_jax.scaling import runs as runs_lib

COLUMNS = (("R@1", "R@1 ↑"), ("R@3", "R@3 ↑"), ("FID", "FID ↓"), ("Diversity", "Div →"),
           ("MM-Dist", "MM-Dist ↓"), ("C_F1_intra", "intra CF1 ↑"))
# Paper Table 2 (diffusion, HandX test set).
PAPER = [
    ("ground truth", (0.854, 0.948, 0.0, 6.887, 4.360, 0.984)),
    ("5 %, 4 layers", (0.142, 0.296, 2.574, 7.406, 6.581, 0.523)),
    ("100 %, 8 layers", (0.285, 0.491, 1.617, 7.037, 5.924, 0.571)),
    ("100 %, 12 layers", (0.427, 0.631, 1.349, 7.220, 5.500, 0.641)),
    ("100 %, 16 layers", (0.382, 0.603, 1.675, 6.426, 5.449, 0.624)),
]


def _cell(mean, ci) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f}" + (f" ± {ci:.3f}" if ci is not None else "")


def _layers(run: runs_lib.Run):
    return (run.config.get("model") or {}).get("num_layers")


def run_row(run: runs_lib.Run) -> tuple[str, list]:
    ratio = run.data_ratio if run.data_ratio is not None else 1.0
    layers = _layers(run)
    name = f"{ratio * 100:g} %, {layers} layer{'' if layers == 1 else 's'}" if layers is not None else f"{ratio * 100:g} %, {run.size}"
    cells = [(run.metric(key), run.last(f"eval/{key}_ci95")) for key, _ in COLUMNS]
    return name, cells


def ground_truth_row(runs: list[runs_lib.Run]):
    for run in runs:
        path = os.path.join(run.path, "eval", "metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                rows = json.load(f).get("rows", {})
            gt = rows.get("ground truth")
            if gt:
                return [(gt.get(k, {}).get("mean"), gt.get(k, {}).get("ci95")) for k, _ in COLUMNS]
    return None


def build(sweep_dir: str) -> tuple[str, str]:
    runs = [r for r in runs_lib.load_runs([sweep_dir]) if r.metric("R@3") is not None]
    if not runs:
        raise SystemExit(f"error: no evaluated runs (eval/R@3 in metrics.jsonl) under {sweep_dir}")
    runs.sort(key=lambda r: (r.data_ratio or 1.0, _layers(r) or 0, r.size, r.name))
    rows = []
    gt = ground_truth_row(runs)
    if gt:
        rows.append(("ground truth", gt))
    rows += [run_row(r) for r in runs]
    header = "| setting | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [f"Table 2 layout, our numbers ({len(runs)} runs from {sweep_dir}); mean ± 95 % interval.",
             "", header, "|---" * (len(COLUMNS) + 1) + "|"]
    lines += ["| " + name + " | " + " | ".join(_cell(m, c) for m, c in cells) + " |" for name, cells in rows]
    lines += ["", "Paper (HandX, Table 2):", "", header, "|---" * (len(COLUMNS) + 1) + "|"]
    lines += ["| " + name + " | " + " | ".join(f"{v:.3f}" for v in values) + " |" for name, values in PAPER]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["setting"] + [k for k, _ in COLUMNS] + [f"{k}_ci95" for k, _ in COLUMNS])
    for name, cells in rows:
        writer.writerow([name] + [m for m, _ in cells] + [c for _, c in cells])
    return "\n".join(lines) + "\n", buf.getvalue()


def table_main(argv, doc: str, build_fn, stem: str) -> int:
    """The command line every table script shares: SWEEP_DIR [--out DIR] -> <stem>.md / .csv."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--out", default=None, help="output directory (default SWEEP_DIR/experiments)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(args.sweep_dir, "experiments")
    os.makedirs(out, exist_ok=True)
    markdown, table_csv = build_fn(args.sweep_dir)
    for name, text in ((f"{stem}.md", markdown), (f"{stem}.csv", table_csv)):
        path = os.path.join(out, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print(markdown)
    print(f"wrote {out}/{stem}.md and {stem}.csv", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return table_main(argv, __doc__, build, "table2")


if __name__ == "__main__":
    sys.exit(main())
