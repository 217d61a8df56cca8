"""Paper Fig. 4 from a sweep directory: R@3 against training FLOPs, fitted log-linearly.

    python experiments/fig4.py SWEEP_DIR [--metric R@3] [--data 0.05] [--out DIR]

Takes the evaluated runs at one data ratio (default: the smallest in the sweep; the paper
uses 5 %), fits metric = a log10(FLOPs) + b with Pearson r and a bootstrap band (robust
loss), flags saturated largest models, and draws the figure with the paper's line
(R@3 = 0.4391 log10(FLOPs) - 3.8707, r = 0.96) for reference. Writes fig4.png/.pdf,
fig4.json (fits.json schema), fig4.csv and fig4.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from handx_jax.scaling import analysis, fit as fit_lib, plots, runs as runs_lib

PAPER_SLOPE, PAPER_INTERCEPT, PAPER_R = 0.4391, -3.8707, 0.96


def select(sweep_dir: str, metric: str, data: float | None) -> tuple[runs_lib.Table, float]:
    runs = runs_lib.load_runs([sweep_dir])
    table = runs_lib.collect(runs, metric, "flops")
    ratios = sorted({r.data_ratio if r.data_ratio is not None else 1.0 for r in table.runs})
    if not ratios:
        raise SystemExit(f"error: no run under {sweep_dir} has eval/{metric} and flops_seen")
    ratio = ratios[0] if data is None else data
    keep = [i for i, r in enumerate(table.runs) if np.isclose(r.data_ratio or 1.0, ratio)]
    if len(keep) < 3:
        raise SystemExit(f"error: {len(keep)} evaluated runs at data ratio {ratio:g}; a fit needs 3")
    sub = runs_lib.Table(runs=[table.runs[i] for i in keep], x=table.x[keep], y=table.y[keep],
                         extra={}, skipped=table.skipped)
    return sub, ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--metric", default="R@3")
    parser.add_argument("--data", type=float, default=None, help="data ratio to plot (default: smallest)")
    parser.add_argument("--out", default=None, help="output directory (default SWEEP_DIR/experiments)")
    parser.add_argument("--bootstrap", type=int, default=500)
    args = parser.parse_args(argv)
    out = args.out or os.path.join(args.sweep_dir, "experiments")
    table, ratio = select(args.sweep_dir, args.metric, args.data)
    result = fit_lib.fit_loglinear(table.x, table.y, metric=args.metric, x_name="flops",
                                   labels=table.labels, n_boot=args.bootstrap)
    result.extra.update({"data_ratio": ratio, "paper": {"a": PAPER_SLOPE, "b": PAPER_INTERCEPT, "r": PAPER_R}})
    paths = analysis.write_outputs(result, table, out, name="fig4")
    # Redraw with the paper's line for reference (same file names).
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    grid = plots.log_grid(table.x)
    mid, low, high = result.band(grid)
    ax.fill_between(grid, low, high, color="C0", alpha=0.2, lw=0, label="95 % band")
    ax.plot(grid, mid, color="C0", label=f"ours: {result.params['a']:.4f} log10(FLOPs) "
            f"{result.params['b']:+.4f}, r = {result.r:.2f}")
    # The paper's line is drawn only where it is a valid R@3 (0..1) over our FLOP range:
    # its FLOP count need not be in our units (we log total training FLOPs).
    paper = PAPER_SLOPE * np.log10(grid) + PAPER_INTERCEPT
    valid = (paper >= 0) & (paper <= 1)
    paper_label = f"paper: {PAPER_SLOPE} log10(FLOPs) {PAPER_INTERCEPT}, r = {PAPER_R}"
    if args.metric == "R@3" and valid.any():
        ax.plot(grid[valid], paper[valid], color="C1", ls="--", label=paper_label)
    elif args.metric == "R@3":
        ax.plot([], [], color="C1", ls="--", label=paper_label + " (outside 0..1 over these FLOPs)")
    saturated = set(result.flags.get("saturated") or [])
    for run, x, y in zip(table.runs, table.x, table.y):
        ax.scatter([x], [y], color="C3" if run.label in saturated else "k", s=20, zorder=3)
        ax.annotate(run.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(args.metric)
    ax.set_title(f"Fig. 4 layout: {args.metric} vs compute, {ratio * 100:g} % data", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    plots.save_figure(fig, os.path.join(out, "fig4"))
    print(analysis.params_markdown(result, table))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
