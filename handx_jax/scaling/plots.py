"""Scaling plots: log x axis, the fitted curve with its 95 % bootstrap band, labelled runs.

Each plot is written as PNG and PDF (temp name, then rename). Matplotlib runs headless.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from handx_jax.scaling.fit import FitResult  # noqa: E402

X_TITLES = {"params": "parameters", "flops": "training FLOPs", "data": "training clips",
            "samples": "samples seen"}


def log_grid(x: np.ndarray, pad: float = 0.15, num: int = 200) -> np.ndarray:
    lo, hi = np.log10(x.min()), np.log10(x.max())
    span = max(hi - lo, 1e-3)
    return np.logspace(lo - pad * span, hi + pad * span, num)


def _label_points(ax, xs, ys, labels):
    for x, y, label in zip(xs, ys, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def sparse_minor_labels(value: float, _pos=None) -> str:
    """Minor-tick label of a log axis: only the 2x and 5x ticks are labelled (matplotlib's
    default labels 2, 3, 4 and 6 as well when an axis spans under a decade, and they overlap)."""
    if value <= 0:
        return ""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = int(round(value / 10.0 ** exponent))
    return rf"${mantissa}\times10^{{{exponent}}}$" if mantissa in (2, 5) else ""


def save_figure(fig, out_prefix: str) -> list[str]:
    from matplotlib import ticker

    for ax in fig.axes:
        if ax.get_xscale() == "log":  # minor labels only where an axis spans too few decades for major ones
            lo, hi = ax.get_xlim()
            wide = lo > 0 and np.log10(hi / lo) > 2
            ax.xaxis.set_minor_formatter(ticker.NullFormatter() if wide else ticker.FuncFormatter(sparse_minor_labels))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = f"{out_prefix}.{ext}"
        tmp = f"{out_prefix}.tmp{os.getpid()}.{ext}"
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths


def _title(result: FitResult) -> str:
    p = result.params
    if result.form == "loglinear":
        text = f"{result.metric} = {p['a']:.4g} log10({result.x}) {p['b']:+.4g}"
        if result.r is not None:
            text += f"  (r = {result.r:.2f})"
        return text
    if result.form == "power":
        return f"{result.metric} = {p['E']:.3g} + {p['A']:.3g} {result.x}^-{p['alpha']:.3f}"
    if result.form in ("power2d", "power2d_log"):
        return (f"{result.metric} = {p['E']:.3g} + {p['A']:.3g} N^-{p['alpha']:.3f}"
                f" + {p['B']:.3g} D^-{p['beta']:.3f}")
    return f"N_opt = {p['k']:.3g} C^{p['a']:.3f}"


def plot_curve(result: FitResult, x: np.ndarray, y: np.ndarray, labels, out_prefix: str,
               *, saturated: list[str] = (), outliers: list[str] = ()) -> list[str]:
    """loglinear / power: metric against x, band, runs labelled; flagged runs marked."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    grid = log_grid(x)
    mid, low, high = result.band(grid)
    ax.fill_between(grid, low, high, color="C0", alpha=0.2, lw=0, label="95 % band")
    ax.plot(grid, mid, color="C0", lw=1.5, label=f"{result.form} fit")
    flagged = np.array([lab in set(saturated) | set(outliers) for lab in labels], bool)
    ax.scatter(x[~flagged], y[~flagged], color="k", s=18, zorder=3, label="runs")
    if flagged.any():
        ax.scatter(x[flagged], y[flagged], facecolor="none", edgecolor="C3", s=40, zorder=3,
                   label="flagged (saturated / outlier)")
    _label_points(ax, x, y, labels)
    ax.set_xscale("log")
    # y range from the runs and the fitted curve: a wide band (few runs) is clipped, not
    # allowed to flatten the points.
    lo, hi = float(min(y.min(), mid.min())), float(max(y.max(), mid.max()))
    if result.form == "power" and lo > 0:
        ax.set_yscale("log")
        ax.set_ylim(lo / 1.3, hi * 1.3)
    else:
        pad = 0.15 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1e-3)
        ax.set_ylim(lo - pad, hi + pad)
    _finish_axes(ax, result, X_TITLES.get(result.x, result.x))
    return save_figure(fig, out_prefix)


def _finish_axes(ax, result: FitResult, xlabel: str) -> None:
    """Axis labels, the fit's title, grid and legend: the same on every single-panel plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(result.metric)
    ax.set_title(_title(result), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plot_power2d(result: FitResult, n: np.ndarray, d: np.ndarray, y: np.ndarray, labels,
                 out_prefix: str) -> list[str]:
    """power2d: metric against model size, one curve (with band) per data size."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    grid = log_grid(n)
    for i, dv in enumerate(np.unique(d)):
        color = f"C{i % 10}"
        mid, low, high = result.band(grid, np.full_like(grid, dv))
        ax.fill_between(grid, low, high, color=color, alpha=0.15, lw=0)
        ax.plot(grid, mid, color=color, lw=1.2, label=f"D = {dv:.4g}")
        sel = d == dv
        ax.scatter(n[sel], y[sel], color=color, s=18, zorder=3)
    _label_points(ax, n, y, labels)
    ax.set_xscale("log")
    _finish_axes(ax, result, "parameters (N)")
    return save_figure(fig, out_prefix)


def plot_isoflop(result: FitResult, n: np.ndarray, flops: np.ndarray, y: np.ndarray, labels,
                 out_prefix: str, size_label: str = "parameters") -> list[str]:
    """isoflop: left, metric against size per budget with its parabola; right, N_opt(C)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    budgets = result.extra["budgets"]
    for i, entry in enumerate(budgets):
        color = f"C{i % 10}"
        lo, hi = np.log10(n).min(), np.log10(n).max()
        lx = np.linspace(lo, hi, 100)
        left.plot(10**lx, np.polyval(entry["coef"], lx), color=color, lw=1,
                  ls="-" if entry["used"] else ":", label=f"C = {entry['budget']:.2g}")
        if entry["used"]:
            left.axvline(10 ** entry["log10_n_opt"], color=color, lw=0.6, ls="--")
    left.scatter(n, y, color="k", s=14, zorder=3)
    _label_points(left, n, y, labels)
    left.set_xscale("log")
    left.set_xlabel(size_label)
    left.set_ylabel(result.metric)
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.3)

    used = [e for e in budgets if e["used"]]
    cs = np.array([e["budget"] for e in used])
    opt = 10 ** np.array([e["log10_n_opt"] for e in used])
    grid = log_grid(cs)
    mid, low, high = result.band(grid)
    right.fill_between(grid, low, high, color="C0", alpha=0.2, lw=0, label="95 % band")
    right.plot(grid, mid, color="C0", label="N_opt = k C^a")
    right.scatter(cs, opt, color="k", s=18, zorder=3, label="per-budget optimum")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("compute budget C (FLOPs)")
    right.set_ylabel(f"optimal {size_label}")
    right.set_title(_title(result), fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    return save_figure(fig, out_prefix)
