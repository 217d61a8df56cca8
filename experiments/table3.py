"""Paper Table 3 layout (autoregressive: model size x codebook size) from a sweep directory.

    python experiments/table3.py SWEEP_DIR [--out DIR]

Rows: ground truth (from the first evaluated run's eval/metrics.json), then one row per
evaluated autoregressive run "<size> (<params>), codebook <nominal> (<actual> codes)", sorted
by parameters and codebook, each "mean ± 95 %" from the run's last `eval/<metric>` and
`eval/<metric>_ci95` log keys, with its held-out token NLL (`eval/loss`). Writes table3.md and
table3.csv. HandX reports its best row at 215.31M parameters with codebook 4096: FID 1.721,
R@1 0.384.
"""

from __future__ import annotations

import csv
import io
import os
import sys

from handx_jax.scaling import runs as runs_lib

COLUMNS = (("R@1", "R@1 ↑"), ("R@3", "R@3 ↑"), ("FID", "FID ↓"), ("Diversity", "Div →"),
           ("MM-Dist", "MM-Dist ↓"), ("C_F1_intra", "intra CF1 ↑"))
PAPER_BEST = "HandX Table 3, best row (215.31M parameters, codebook 4096): FID 1.721, R@1 0.384."


def _table2():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "table2.py")
    spec = importlib.util.spec_from_file_location("experiments_table2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_row(run: runs_lib.Run) -> tuple[str, list, float | None]:
    model = run.config.get("model") or {}
    params = run.x_value("params")
    name = (f"{run.size}" + (f" ({params / 1e6:.2f}M)" if params else "")
            + f", codebook {model.get('codebook', '?')} ({model.get('codebook_size', '?')} codes)")
    cells = [(run.metric(key), run.last(f"eval/{key}_ci95")) for key, _ in COLUMNS]
    return name, cells, run.metric("loss")


def build(sweep_dir: str) -> tuple[str, str]:
    t2 = _table2()
    runs = [r for r in runs_lib.load_runs([sweep_dir]) if r.metric("R@3") is not None and r.family == "autoregressive"]
    if not runs:
        raise SystemExit(f"error: no evaluated autoregressive runs (eval/R@3 in metrics.jsonl) under {sweep_dir}")
    runs.sort(key=lambda r: (r.x_value("params") or 0, (r.config.get("model") or {}).get("codebook", 0), r.name))
    header = "| setting | " + " | ".join(title for _, title in COLUMNS) + " | token NLL ↓ |"
    lines = [f"Table 3 layout, our numbers ({len(runs)} runs from {sweep_dir}); mean ± 95 % interval.", "",
             header, "|---" * (len(COLUMNS) + 2) + "|"]
    gt = t2.ground_truth_row(runs)
    if gt:
        lines.append("| ground truth | " + " | ".join(t2._cell(m, c) for m, c in gt) + " | - |")
    rows = [run_row(r) for r in runs]
    for name, cells, nll in rows:
        lines.append("| " + name + " | " + " | ".join(t2._cell(m, c) for m, c in cells) + " | "
                     + ("-" if nll is None else f"{nll:.4f}") + " |")
    lines += ["", PAPER_BEST]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["setting"] + [k for k, _ in COLUMNS] + [f"{k}_ci95" for k, _ in COLUMNS] + ["token_nll"])
    for name, cells, nll in rows:
        writer.writerow([name] + [m for m, _ in cells] + [c for _, c in cells] + [nll])
    return "\n".join(lines) + "\n", buf.getvalue()


def main(argv=None) -> int:
    return _table2().table_main(argv, __doc__, build, "table3")


if __name__ == "__main__":
    sys.exit(main())
