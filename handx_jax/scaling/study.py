"""An IsoFLOP study from run directories: optima, the compute frontier, extrapolation, metrics.

`handx scaling study RUN_DIRS --out DIR` reads the runs of a compute-budget sweep (each
run's `config.json` and `metrics.jsonl`) and fits, in this order:

1. IsoFLOP on the held-out loss: per budget a parabola in log10(N), its optimum N*(C) and
   data size D*(C) (samples seen), then N* = k C^a and D* = k' C^b with 95 % intervals and
   the compute-optimal samples-per-parameter ratio per budget.
2. The frontier: each budget's optimal loss L*(C) (the parabola's minimum) as a power law
   L* = A C^-alpha, fitted in log-log (r^2 reported).
3. Extrapolation: the held-out budgets (by default the largest) are left out of 1-2; the
   frontier predicts their optimal loss, compared with the best held-out run.
4. Metrics on the frontier: R@3 (and FID) of each budget's loss-optimal run against
   log10(FLOPs), the paper's Fig. 4 form, with its slope, r and saturation flag.
5. L(N, D) = E + A N^-alpha + B D^-beta fitted in log space over every fitting run.

Writes `study.json` (every number above), `study.md` (a table) and four figures.
"""

from __future__ import annotations

import json
import os

import numpy as np

from handx_jax.scaling import fit as fit_lib
from handx_jax.scaling import plots, runs as runs_lib
from handx_jax.scaling.analysis import _write

LOSS_KEY = "eval/loss"  # the held-out loss every task logs (never the training loss)
SIZES = ("blocks", "params")
# Weights per transformer block as a multiple of (d^2, d * mlp): attention q, k, v, out plus
# a two-matrix MLP (diffusion) or a gated three-matrix SwiGLU (autoregressive).
BLOCK_SHAPES = {"diffusion": (4, 2), "autoregressive": (4, 3)}


def block_params(run: runs_lib.Run) -> float | None:
    """Parameters of the run's transformer blocks (attention and MLP weight matrices), the
    model size of Kaplan et al.: input, output and text projections (embeddings) are left
    out. At CPU sizes a fixed-width text projection holds most of a small model's weights,
    so the total barely grows with width while the blocks do."""
    model = run.config.get("model") or {}
    shape = BLOCK_SHAPES.get(run.family)
    try:
        layers, d, mlp = int(model["num_layers"]), int(model["d_model"]), int(model["mlp_dim"])
    except (KeyError, TypeError, ValueError):
        return None
    if shape is None:
        return None
    return float(layers * (shape[0] * d * d + shape[1] * d * mlp))


def load_table(run_paths: list[str], metrics: tuple[str, ...], size: str = "blocks"
               ) -> tuple[list[runs_lib.Run], dict, list[str]]:
    """Runs with params, FLOPs, samples and the held-out loss (others are listed as skipped
    with the reason, never dropped silently); metrics a run lacks are NaN. `size`: the model
    size N is the logged total `params` or the transformer blocks' parameters (`blocks`)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    runs = runs_lib.load_runs(run_paths)
    if not runs:
        raise ValueError(f"no run directories (config.json + metrics.jsonl) under {run_paths}")
    families = sorted({str(run.family) for run in runs})
    if len(families) > 1:
        raise ValueError(f"the runs under {run_paths} mix model families ({', '.join(families)}); one law per "
                         f"family: pass one family's runs, e.g. OUT/runs/{families[0]}-*")
    table = runs_lib.collect(runs, LOSS_KEY, "params", also=("flops", "samples"))
    kept, skipped = list(table.runs), list(table.skipped)
    if size == "blocks":
        blocks = [block_params(run) for run in kept]
        skipped += [f"{run.path} (no transformer-block shape in config.json)" for run, b in zip(kept, blocks) if b is None]
        keep = [i for i, b in enumerate(blocks) if b is not None]
        kept = [kept[i] for i in keep]
        table.x = np.asarray([blocks[i] for i in keep], float)
        table.y = np.asarray(table.y, float)[keep]
        table.extra = {k: np.asarray(v, float)[keep] for k, v in table.extra.items()}
    out = {"params": np.asarray(table.x, float), "flops": np.asarray(table.extra["flops"], float),
           "samples": np.asarray(table.extra["samples"], float), LOSS_KEY: np.asarray(table.y, float)}
    for metric in metrics:
        values = [run.metric(metric) for run in kept]
        out[metric] = np.array([np.nan if v is None else float(v) for v in values])
    return kept, out, skipped


def split_holdout(flops: np.ndarray, holdout: str | float | None) -> tuple[np.ndarray, np.ndarray]:
    """Budget index per run, and a mask of held-out runs: 'largest', a budget in FLOPs
    (runs within 15 % of it) or None."""
    group = fit_lib.group_budgets(flops)
    if holdout is None:
        return group, np.zeros(len(flops), bool)
    if holdout == "largest":
        held = group == group.max()
    else:
        target = float(holdout)
        held = np.abs(flops / target - 1.0) <= 0.15
        if not held.any():
            raise ValueError(f"held-out budget {target:g} FLOPs matches no run (budgets: "
                             f"{sorted({float(f'{v:.3g}') for v in flops})})")
    if len(np.unique(group[~held])) < 2:
        raise ValueError("holding those runs out leaves fewer than 2 budgets to fit")
    return group, held


def _budget_best(group, values, loss, mask):
    """Per budget (among `mask`): FLOPs (geometric mean) and the index of its loss-optimal run."""
    out = []
    for g in np.unique(group[mask]):
        idx = np.flatnonzero((group == g) & mask)
        best = idx[np.argmin(loss[idx])]
        out.append((float(np.exp(np.mean(np.log(values[idx])))), int(best), idx))
    return out


def _prediction(result: fit_lib.FitResult, xs: tuple, sigma: float, rng, *, log_space: bool):
    """Point prediction and 95 % prediction interval of one input: bootstrap curves plus
    the fit's residual scatter (log L for power2d_log; log10 L for the frontier law)."""
    names = list(result.params)
    theta = np.array([result.params[n] for n in names])
    mid = float(np.ravel(result.predict(theta, *xs))[0])
    draws = np.array([float(np.ravel(result.predict(b, *xs))[0]) for b in result.boot]) if len(result.boot) else \
        np.full(200, mid)
    if log_space:  # the frontier law is fitted on log10 L
        sample = draws + rng.normal(0.0, sigma, draws.shape)
        lo, hi = np.percentile(sample, [2.5, 97.5])
        return 10.0**mid, 10.0**lo, 10.0**hi
    sample = np.log(np.maximum(draws, 1e-300)) + rng.normal(0.0, sigma, draws.shape)
    lo, hi = np.percentile(sample, [2.5, 97.5])
    return mid, float(np.exp(lo)), float(np.exp(hi))


def analyse(run_paths: list[str], *, holdout: str | float | None = "largest",
            metrics: tuple[str, ...] = ("R@3", "FID"), n_boot: int = 500, seed: int = 0,
            size: str = "blocks") -> dict:
    """Every fit of the study as a JSON-ready dict (plus private arrays for the plots)."""
    runs, t, skipped = load_table(run_paths, metrics, size)
    if len(runs) < 6:
        raise ValueError(f"study needs at least 6 runs with a held-out loss; found {len(runs)} "
                         f"(skipped: {skipped})")
    labels = [r.label for r in runs]
    group, held = split_holdout(t["flops"], holdout)
    fit_mask = ~held
    loss = t[LOSS_KEY]
    idx = np.flatnonzero(fit_mask)
    iso = fit_lib.fit_isoflop(t["params"][idx], t["flops"][idx], loss[idx], metric="eval/loss", goal="min",
                              labels=[labels[i] for i in idx], n_boot=n_boot, seed=seed,
                              samples=t["samples"][idx], budgets=group[idx])
    out = {"size": size, "runs": [r.path for r in runs], "skipped": skipped,
           "holdout_runs": [runs[i].path for i in np.flatnonzero(held)], "isoflop": iso.to_json()}

    # Frontier: each used budget's parabola minimum (optimal loss), as a power law in C.
    used = [e for e in iso.extra["budgets"] if e["used"]]
    front_c = np.array([e["budget"] for e in used])
    front_l = np.array([e["value_opt"] for e in used])
    frontier = None
    if len(used) >= 3:
        frontier = fit_lib.fit_loglinear(front_c, np.log10(front_l), metric="log10 eval/loss", x_name="flops",
                                         labels=[f"C={c:.2g}" for c in front_c], n_boot=n_boot, seed=seed)
        out["frontier"] = {**frontier.to_json(), "r2": float(frontier.r**2),
                           "alpha": -float(frontier.params["a"]),
                           "alpha_ci95": sorted(-v for v in frontier.ci95["a"]),
                           "points": [{"flops": float(c), "loss": float(v)} for c, v in zip(front_c, front_l)]}
    else:
        out["frontier"] = {"error": f"only {len(used)} budget(s) with an interior optimum; need 3"}

    # The joint law over every fitting run: N = parameters, D = samples seen.
    joint = None
    try:
        joint = fit_lib.fit_power2d_log(t["params"][idx], t["samples"][idx], loss[idx], metric="eval/loss",
                                        x_name="params,samples", labels=[labels[i] for i in idx],
                                        n_boot=min(n_boot, 300), seed=seed)
        out["power2d_log"] = joint.to_json()
    except (ValueError, RuntimeError) as err:
        out["power2d_log"] = {"error": str(err)}

    # Extrapolation: every held-out run predicted by the joint law from its (N, D), and each
    # held-out budget's best loss by the frontier law; 95 % prediction intervals (fit
    # uncertainty from the bootstrap plus the runs' own scatter).
    rng = np.random.default_rng(seed)
    checks = []
    best_held = _budget_best(group, t["flops"], loss, held) if held.any() else []
    for c, best, members in best_held:
        check = {"flops": c, "runs": int(len(members)), "best_run": runs[best].path, "observed": float(loss[best])}
        if joint is not None:
            per_run = []
            for i in members:
                mid, lo, hi = _prediction(joint, (np.array([t["params"][i]]), np.array([t["samples"][i]])),
                                          joint.extra["sigma_log"], rng, log_space=False)
                per_run.append({"run": runs[i].path, "observed": float(loss[i]), "predicted": mid, "ci95": [lo, hi],
                                "relative_error": float(loss[i] / mid - 1.0), "inside": bool(lo <= loss[i] <= hi)})
            check["joint"] = per_run
            best_entry = next(e for e in per_run if e["run"] == runs[best].path)
            check.update(predicted=best_entry["predicted"], ci95=best_entry["ci95"],
                         relative_error=best_entry["relative_error"], inside=best_entry["inside"],
                         inside_fraction=float(np.mean([e["inside"] for e in per_run])),
                         predicted_by="power2d_log")
        if frontier is not None:
            mid, lo, hi = _prediction(frontier, (np.array([c]),), frontier.extra["sigma"], rng, log_space=True)
            check["frontier"] = {"predicted": mid, "ci95": [lo, hi], "relative_error": float(loss[best] / mid - 1.0),
                                 "inside": bool(lo <= loss[best] <= hi)}
            if "predicted" not in check:
                check.update(predicted=mid, ci95=[lo, hi], relative_error=check["frontier"]["relative_error"],
                             inside=check["frontier"]["inside"], predicted_by="frontier")
        checks.append(check)
    out["extrapolation"] = checks

    # Metrics on the loss-optimal frontier (fitting budgets), held-out budgets shown beside.
    out["frontier_metrics"] = {}
    best_fit = _budget_best(group, t["flops"], loss, fit_mask)
    for metric in metrics:
        values = t.get(metric)
        if values is None:
            continue
        pts = [(c, float(values[b]), runs[b].label) for c, b, _ in best_fit if np.isfinite(values[b])]
        entry = {"points": [{"flops": c, "value": v, "run": lab} for c, v, lab in pts],
                 "holdout": [{"flops": c, "value": float(values[b]), "run": runs[b].label}
                             for c, b, _ in best_held if np.isfinite(values[b])]}
        if len(pts) >= 3:
            res = fit_lib.fit_loglinear(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]),
                                        metric=metric, x_name="flops", labels=[p[2] for p in pts],
                                        n_boot=n_boot, seed=seed)
            entry["fit"] = res.to_json()
            entry["_result"] = res
        out["frontier_metrics"][metric] = entry

    out["_private"] = {"iso": iso, "frontier": frontier, "table": t, "labels": labels, "held": held,
                       "group": group}
    return out


def plot_frontier(study: dict, out_prefix: str) -> list[str]:
    """Held-out loss of every run against compute, the frontier law, its band and the
    extrapolated budget (predicted with its interval, and observed)."""
    import matplotlib.pyplot as plt

    p = study["_private"]
    t, held, frontier = p["table"], p["held"], p["frontier"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(t["flops"][~held], t[LOSS_KEY][~held], color="0.6", s=14, label="runs (fitting budgets)")
    if held.any():
        ax.scatter(t["flops"][held], t[LOSS_KEY][held], facecolor="none", edgecolor="C3", s=24,
                   label="runs (held-out budget)")
    pts = (study.get("frontier") or {}).get("points") or []
    if pts:
        ax.scatter([q["flops"] for q in pts], [q["loss"] for q in pts], color="k", s=26, zorder=3,
                   label="per-budget optimum")
    if frontier is not None:
        xs = np.concatenate([t["flops"], [c["flops"] for c in study["extrapolation"]]])
        grid = plots.log_grid(np.asarray(xs, float))
        mid, low, high = frontier.band(grid)
        fj = study["frontier"]
        ax.fill_between(grid, 10**low, 10**high, color="C0", alpha=0.2, lw=0, label="95 % band")
        ax.plot(grid, 10**mid, color="C0",
                label=f"L* = {10 ** fj['params']['b']:.3g} C^-{fj['alpha']:.3f} (r^2 = {fj['r2']:.3f})")
    for check in study["extrapolation"]:
        lo, hi = check["ci95"]
        ax.errorbar([check["flops"]], [check["predicted"]], yerr=[[check["predicted"] - lo], [hi - check["predicted"]]],
                    fmt="D", color="C2", ms=5, capsize=3, label=f"predicted by {check['predicted_by']} (held out)")
        ax.scatter([check["flops"]], [check["observed"]], marker="*", color="C3", s=90, zorder=4,
                   label=f"observed ({check['relative_error']:+.1%}, {'inside' if check['inside'] else 'outside'})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("held-out loss (eval/loss)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    return plots.save_figure(fig, out_prefix)


def plot_metric(study: dict, metric: str, out_prefix: str) -> list[str] | None:
    """A metric of each budget's loss-optimal run against FLOPs, with its log-linear fit."""
    import matplotlib.pyplot as plt

    entry = study["frontier_metrics"].get(metric)
    if not entry or not entry.get("points"):
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    xs = np.array([q["flops"] for q in entry["points"]] + [q["flops"] for q in entry["holdout"]])
    res = entry.get("_result")
    if res is not None:
        grid = plots.log_grid(xs)
        mid, low, high = res.band(grid)
        ax.fill_between(grid, low, high, color="C0", alpha=0.2, lw=0, label="95 % band")
        sat = " (saturating)" if res.flags.get("saturated") else ""
        ax.plot(grid, mid, color="C0", label=f"{res.params['a']:.3g} log10(C) {res.params['b']:+.3g}, "
                                            f"r = {res.r:.2f}{sat}")
    ax.scatter([q["flops"] for q in entry["points"]], [q["value"] for q in entry["points"]], color="k", s=22,
               zorder=3, label="loss-optimal run per budget")
    if entry["holdout"]:
        ax.scatter([q["flops"] for q in entry["holdout"]], [q["value"] for q in entry["holdout"]], marker="*",
                   color="C3", s=80, zorder=3, label="held-out budget")
    for q in entry["points"] + entry["holdout"]:
        ax.annotate(q["run"], (q["flops"], q["value"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return plots.save_figure(fig, out_prefix)


def markdown(study: dict) -> str:
    """The study's tables: runs, per-budget optima, laws, extrapolation, metrics."""
    p = study["_private"]
    t = p["table"]
    lines = [f"Model size N: {'transformer-block parameters' if study['size'] == 'blocks' else 'all parameters'}.", "",
             f"| run | N ({study['size']}) | FLOPs | samples | eval/loss | " + " | ".join(study["frontier_metrics"]) + " |",
             "|---|---|---|---|---|" + "---|" * len(study["frontier_metrics"])]
    order = np.lexsort((t["params"], t["flops"]))
    for i in order:
        extra = " | ".join(f"{t[m][i]:.4g}" for m in study["frontier_metrics"])
        held = " (held out)" if p["held"][i] else ""
        lines.append(f"| {p['labels'][i]}{held} | {t['params'][i]:.4g} | {t['flops'][i]:.3g} | "
                     f"{t['samples'][i]:.4g} | {t[LOSS_KEY][i]:.4f} | {extra} |")
    iso = study["isoflop"]
    lines += ["", "| budget (FLOPs) | N* | D* (samples) | samples / param (95 %) | optimal loss | used |",
              "|---|---|---|---|---|---|"]
    for e in iso["extra"]["budgets"]:
        ratio = (f"{e['samples_per_param']:.3g} [{e['samples_per_param_ci95'][0]:.3g}, "
                 f"{e['samples_per_param_ci95'][1]:.3g}]") if "samples_per_param" in e else "-"
        d_opt = f"{10 ** e['log10_d_opt']:.3g}" if "log10_d_opt" in e else "-"
        lines.append(f"| {e['budget']:.3g} | {10 ** e['log10_n_opt']:.3g} | {d_opt} | {ratio} | "
                     f"{e['value_opt']:.4f} | {e['used']} |")
    a = iso["params"]["a"]
    lines += ["", f"- N* = k C^a: a = {a:.3f} [{iso['ci95']['a'][0]:.3f}, {iso['ci95']['a'][1]:.3f}]"]
    law = iso["extra"].get("data_law")
    if law:
        lines.append(f"- D* = k' C^b: b = {law['b']:.3f} [{law['ci95']['b'][0]:.3f}, {law['ci95']['b'][1]:.3f}]")
    fr = study["frontier"]
    if "alpha" in fr:
        lines.append(f"- frontier L* = A C^-alpha: alpha = {fr['alpha']:.4f} "
                     f"[{fr['alpha_ci95'][0]:.4f}, {fr['alpha_ci95'][1]:.4f}], r^2 = {fr['r2']:.4f}")
    else:
        lines.append(f"- frontier: {fr.get('error')}")
    for c in study["extrapolation"]:
        if "joint" in c:
            lines.append(f"- held-out budget {c['flops']:.3g}, best run predicted by L(N, D): {c['predicted']:.4f} "
                         f"[{c['ci95'][0]:.4f}, {c['ci95'][1]:.4f}], observed {c['observed']:.4f} "
                         f"({c['relative_error']:+.1%}, {'inside' if c['inside'] else 'OUTSIDE'} the 95 % prediction "
                         f"interval; {c['inside_fraction']:.0%} of its {c['runs']} runs inside theirs)")
        if "frontier" in c:
            f = c["frontier"]
            lines.append(f"- held-out budget {c['flops']:.3g}, optimal loss predicted by the frontier law: "
                         f"{f['predicted']:.4f} [{f['ci95'][0]:.4f}, {f['ci95'][1]:.4f}], observed best "
                         f"{c['observed']:.4f} ({f['relative_error']:+.1%}, "
                         f"{'inside' if f['inside'] else 'OUTSIDE'})")
    for metric, entry in study["frontier_metrics"].items():
        if "fit" in entry:
            f = entry["fit"]
            lines.append(f"- {metric} on the frontier = {f['params']['a']:.4f} log10(C) {f['params']['b']:+.4f} "
                         f"(slope 95 % [{f['ci95']['a'][0]:.4f}, {f['ci95']['a'][1]:.4f}], r = {f['r']:.3f}"
                         f"{', saturating: ' + str(f['flags'].get('saturated')) if f['flags'].get('saturated') else ''})")
    joint = study["power2d_log"]
    if "params" in joint:
        q, ci = joint["params"], joint["ci95"]
        lines.append(f"- L(N, D) = E + A N^-alpha + B D^-beta (log space, D = samples seen): "
                     f"E = {q['E']:.4g}, alpha = {q['alpha']:.3f} [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}], "
                     f"beta = {q['beta']:.3f} [{ci['beta'][0]:.3f}, {ci['beta'][1]:.3f}]")
    else:
        lines.append(f"- L(N, D): {joint.get('error')}")
    if study["skipped"]:
        lines += ["", "Skipped runs:"] + [f"- {s}" for s in study["skipped"]]
    return "\n".join(lines) + "\n"


def _public(value):
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def write_study(study: dict, out_dir: str) -> dict[str, str]:
    """study.json, study.md and the figures (PNG + PDF) in `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": _write(os.path.join(out_dir, "study.json"),
                            json.dumps(_public(study), indent=2, sort_keys=True) + "\n"),
             "md": _write(os.path.join(out_dir, "study.md"), markdown(study))}
    iso = study["_private"]["iso"]
    t = study["_private"]["table"]
    fit_mask = ~study["_private"]["held"]
    paths["isoflop"] = plots.plot_isoflop(iso, t["params"][fit_mask], t["flops"][fit_mask], t[LOSS_KEY][fit_mask],
                                          [lab for lab, m in zip(study["_private"]["labels"], fit_mask) if m],
                                          os.path.join(out_dir, "isoflop"),
                                          size_label="transformer-block parameters" if study["size"] == "blocks"
                                          else "parameters")[0]
    paths["frontier"] = plot_frontier(study, os.path.join(out_dir, "frontier"))[0]
    for metric in study["frontier_metrics"]:
        figure = plot_metric(study, metric, os.path.join(out_dir, "frontier_" + metric.replace("@", "").lower()))
        if figure:
            paths[f"frontier_{metric}"] = figure[0]
    return paths
