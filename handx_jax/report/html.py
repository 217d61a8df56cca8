"""One HTML file per run (`RUN/report.html`) and per sweep (`SWEEP/report.html`).

Everything is embedded (figures as PNG data URIs, renders as GIF/MP4 data URIs, no script,
no network), so the file can be mailed or opened from a cluster's scratch disk. A run report
shows the loss curves (and learning rate, gradient norm), every evaluation table with its
95 % intervals and reference checks, sample renders with their prompts, and the config. A
sweep report shows per point the state, steps, losses and time, the eval metrics with
intervals, all loss curves overlaid (against steps and against training FLOPs), the scaling
fits with their intervals and plots (fitted here when the sweep has none yet), and the
renders it finds.
"""

from __future__ import annotations

import base64
import datetime
import glob
import html
import io
import json
import math
import os
import sys

from handx_jax.eval import report as eval_report
from handx_jax.train import metrics_log

MIME = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4", ".svg": "image/svg+xml"}
NOT_LOSS = ("grad_norm", "lr", "params", "samples_seen", "flops_seen", "step_time", "examples_per_s", "mfu",
            "wall_time", "step")
MAX_EMBED_BYTES = 8 * 2 ** 20  # a larger render is linked, not embedded
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:0.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:0.9em}table{border-collapse:collapse;font-size:0.85em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}
figcaption{font-size:0.82em;color:#444;max-width:460px}img,video{max-width:100%}
.wide{overflow-x:auto}.ok{color:#2a7}.bad{color:#c33}pre{background:#f7f7f7;padding:8px;font-size:0.8em;overflow:auto;max-height:400px}
"""


# --------------------------------------------------------------------------- pieces


def _esc(text) -> str:
    return html.escape(str(text))


def data_uri(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        return f"data:{MIME.get(ext, 'application/octet-stream')};base64,{base64.b64encode(f.read()).decode()}"


def figure_png(fig) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def media(path: str, caption: str = "") -> str:
    """An embedded image or video with a caption (linked instead when too large)."""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    if os.path.getsize(path) > MAX_EMBED_BYTES:
        return f"<figure><a href=\"{_esc(os.path.basename(path))}\">{_esc(os.path.basename(path))}</a>{cap}</figure>"
    if path.lower().endswith(".mp4"):
        return f"<figure><video controls loop muted src=\"{data_uri(path)}\"></video>{cap}</figure>"
    return f"<figure><img alt=\"{_esc(os.path.basename(path))}\" src=\"{data_uri(path)}\">{cap}</figure>"


def _num(value, digits: int = 4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-" if value is None else _esc(value)
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """Cells are already escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class=\"wide\"><table>{head}<tbody>{body}</tbody></table></div>"


def page(title: str, sections: list[str]) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>"
            f"<p class=\"meta\">written {stamp} by handx report</p>" + "\n".join(sections) + "</body></html>\n")


def write_html(path: str, text: str) -> str:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------- metrics


def read_lines(run_dir: str) -> list[dict]:
    try:
        return metrics_log.read_metrics(run_dir)
    except (OSError, json.JSONDecodeError):
        return []


def train_lines(lines: list[dict]) -> list[dict]:
    return [r for r in lines if "loss" in r and "step" in r]


def loss_keys(lines: list[dict]) -> list[str]:
    """`loss` first, then the other loss terms the task logs."""
    keys = []
    for r in lines:
        for k, v in r.items():
            if k not in NOT_LOSS and not k.startswith("eval/") and isinstance(v, (int, float)) and k not in keys:
                keys.append(k)
    return sorted(keys, key=lambda k: (k != "loss", k))


def _log_if_positive(ax, values) -> None:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")


def loss_figure(lines: list[dict]) -> str | None:
    """Loss terms against step; learning rate and gradient norm beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = train_lines(lines)
    if not train:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = [r["step"] for r in train]
    for key in loss_keys(train):
        values = [r.get(key, float("nan")) for r in train]
        values = [float(v) if isinstance(v, (int, float)) else float("nan") for v in values]
        ax.plot(steps, values, label=key, lw=1.8 if key == "loss" else 1.0)
    _log_if_positive(ax, [r["loss"] for r in train])
    ax.set(xlabel="step", ylabel="loss", title="training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for key, colour in (("lr", "tab:purple"), ("grad_norm", "tab:gray")):
        if any(key in r for r in train):
            target = ax2 if key == "lr" else ax2.twinx()
            target.plot(steps, [r.get(key, float("nan")) for r in train], color=colour, label=key)
            target.set_ylabel(key, color=colour)
    ax2.set(xlabel="step", title="learning rate and gradient norm")
    ax2.grid(alpha=0.3)
    return figure_png(fig)


def eval_sections(run_dir: str) -> list[str]:
    """One table per evaluation (eval/metrics.json and eval/step_*/metrics.json), mean ±
    95 % interval, then its reference checks."""
    out = []
    paths = sorted(glob.glob(os.path.join(run_dir, "eval", "metrics.json")) +
                   glob.glob(os.path.join(run_dir, "eval", "*", "metrics.json")))
    for path in paths:
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            out.append(f"<p class=\"bad\">{_esc(path)}: unreadable ({_esc(err)})</p>")
            continue
        rows = result.get("rows", {})
        columns = [(k, h, d) for k, h, d in eval_report.COLUMNS if any(k in m for m in rows.values())]
        table = html_table(["setting"] + [_esc(h) for _, h, _ in columns],
                           [[_esc(name)] + [_cell(metrics.get(k), d) for k, _, d in columns]
                            for name, metrics in rows.items()])
        meta = result.get("meta", {})
        where = os.path.relpath(os.path.dirname(path), run_dir)
        text = (f"<h3>{_esc(where)}</h3><p class=\"meta\">{_esc(meta.get('replications', '?'))} replications, "
                f"{_esc(meta.get('num_samples', '?'))} test clips; mean ± 95 % interval</p>{table}")
        sanity = result.get("sanity") or {}
        if sanity:
            text += "<details><summary>reference checks</summary>" + html_table(
                ["check", "value"], [[_esc(k), _num(v)] for k, v in sanity.items()]) + "</details>"
        out.append(text)
    if not out:
        evals = {k: v for r in read_lines(run_dir) for k, v in r.items() if k.startswith("eval/")}
        if evals:
            keys = [k for k in evals if not k.endswith("_ci95")]
            out.append(html_table(["metric", "value", "± 95 %"],
                                  [[_esc(k[5:]), _num(evals[k]), _num(evals.get(k + "_ci95"))] for k in keys]))
    return out


def _cell(summary, digits: int) -> str:
    if not summary or not isinstance(summary.get("mean"), (int, float)) or not math.isfinite(summary["mean"]):
        return "-"
    ci = summary.get("ci95")
    ci = f" ± {ci:.{digits}f}" if isinstance(ci, (int, float)) and math.isfinite(ci) else ""
    return f"{summary['mean']:.{digits}f}{ci}"


def find_renders(*dirs: str) -> list[str]:
    out = []
    for d in dirs:
        for ext in ("gif", "mp4"):
            out += sorted(glob.glob(os.path.join(d, f"*.{ext}")))
    return out


def _prompt_caption(captions) -> str:
    left, right, relation = (list(captions) + ["", "", ""])[:3]
    return (f"<b>left</b>: {_esc(left or '-')}<br><b>right</b>: {_esc(right or '-')}<br>"
            f"<b>two hands</b>: {_esc(relation or '-')}")


def render_samples(samples: str, out_dir: str, num: int, fps: int = 30) -> list[tuple[str, tuple]]:
    """Render the first `num` clips of a samples file into `out_dir` (skipped when there)."""
    from handx_jax.data import store
    from handx_jax.diffusion import render
    from handx_jax.viz import clips as clips_lib

    clips = store.load_any(samples)
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for name in list(clips)[:num]:
        captions = clips_lib.clip_captions(clips[name])
        path = os.path.join(out_dir, f"{clips_lib.safe_name(name)}.gif")
        if not os.path.isfile(path):
            render.render_panels([render.Panel(clips[name]["motion"], name, captions)], path, fps=fps, size=3.6,
                                 fmt="gif")
        made.append((path, captions))
    return made


# -------------------------------------------------------------------------- run


def run_report(run_dir: str, *, renders: list[tuple[str, tuple]] | None = None, title: str | None = None,
               notes: str = "") -> str:
    """The HTML text of one run's report."""
    lines = read_lines(run_dir)
    config = metrics_log.read_config_json(run_dir) or {}
    train = train_lines(lines)
    last = train[-1] if train else {}
    total = (config.get("train") or {}).get("steps")
    facts = [["task", _esc(config.get("task", "?"))], ["size", _esc(config.get("size", "?"))],
             ["parameters", _num(last.get("params"), 6)],
             ["step", f"{_esc(last.get('step', '-'))} / {_esc(total if total is not None else '?')}"],
             ["last loss", _num(last.get("loss"))], ["batch", _esc((config.get("train") or {}).get("batch_size", "?"))],
             ["training FLOPs", _num(last.get("flops_seen"), 3)], ["step time (s)", _num(last.get("step_time"), 3)]]
    sections = [f"<p class=\"meta\">{_esc(os.path.abspath(run_dir))}</p>" + (f"<p>{notes}</p>" if notes else ""),
                html_table(["", ""], facts), "<h2>Loss curves</h2>"]
    fig = loss_figure(lines)
    sections.append(f"<figure><img alt=\"loss curves\" src=\"{fig}\"></figure>" if fig else
                    "<p>no training lines in metrics.jsonl yet</p>")
    evals = eval_sections(run_dir)
    sections += ["<h2>Evaluation</h2>"] + (evals or ["<p>not evaluated yet (<code>handx evaluate</code>)</p>"])
    shown = list(renders or [])
    known = {os.path.abspath(p) for p, _ in shown}
    shown += [(p, None) for p in find_renders(run_dir, os.path.join(run_dir, "renders"))
              if os.path.abspath(p) not in known]
    if shown:
        sections.append("<h2>Samples</h2>")
        sections += [media(p, _prompt_caption(c) if c else _esc(os.path.basename(p))) for p, c in shown]
    sections.append("<h2>Config</h2><details><summary>config.json</summary><pre>"
                    + _esc(json.dumps(config, indent=2, sort_keys=True)) + "</pre></details>")
    return page(title or f"Run {os.path.basename(os.path.abspath(run_dir))}", sections)


def write_run_report(run_dir: str, out: str | None = None, *, samples: str | None = None, num_renders: int = 2,
                     renders: list[tuple[str, tuple]] | None = None, title: str | None = None,
                     notes: str = "") -> str:
    """Write `run_dir/report.html` (or `out`); with `samples`, render its first clips into
    `run_dir/renders/` and embed them with their prompts. Returns the path."""
    renders = list(renders or [])
    if samples:
        renders += render_samples(samples, os.path.join(run_dir, "renders"), num_renders)
    out = out or os.path.join(run_dir, "report.html")
    return write_html(out, run_report(run_dir, renders=renders, title=title, notes=notes))


# ------------------------------------------------------------------------ sweep


def sweep_curves(rows: list[dict]) -> str | None:
    """Every point's loss against step and against training FLOPs, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(r["id"], train_lines(read_lines(r["workdir"]))) for r in rows]
    curves = [(name, t) for name, t in curves if t]
    if not curves:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, t in curves:
        line, = ax.plot([r["step"] for r in t], [r["loss"] for r in t], lw=1.2, label=name)
        flops = [(r.get("flops_seen"), r["loss"]) for r in t if isinstance(r.get("flops_seen"), (int, float))
                 and r.get("flops_seen", 0) > 0]
        if flops:
            ax2.plot(*zip(*flops), lw=1.2, color=line.get_color())
    _log_if_positive(ax, [r["loss"] for _, t in curves for r in t])
    ax.set(xlabel="step", ylabel="loss", title="training loss per point")
    ax2.set(xlabel="training FLOPs", ylabel="loss", title="loss against compute", xscale="log", yscale="log")
    for a in (ax, ax2):
        a.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    return figure_png(fig)


def find_fits(sweep_dir: str) -> list[str]:
    """Fit outputs (`<name>.json` of `handx scaling fit`) anywhere under the sweep."""
    out = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, "**", "*.json"), recursive=True)):
        if os.sep + "runs" + os.sep in path or os.path.basename(path) in ("sweep.json", "config.json"):
            continue
        try:
            with open(path) as f:
                obj = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict) and {"form", "metric", "params", "ci95"} <= set(obj):
            out.append(path)
    return out


def fit_default(sweep_dir: str, metric: str = "R@3", x: str = "flops", n_boot: int = 200) -> list[str]:
    """Fit `metric` against `x` (loglinear) into `SWEEP/scaling/` when three or more points
    have it; returns the fits JSON written (none when too few runs)."""
    from handx_jax.scaling import analysis

    from handx_jax.scaling import launch

    try:  # the current plan's points only: runs of earlier configs (stale points) stay out of the fit
        current = [p["workdir"] for p in launch.read_manifest(sweep_dir)["points"] if os.path.isdir(p["workdir"])]
        result, table = analysis.fit_runs(current or [os.path.join(sweep_dir, "runs")], metric=metric, x=x,
                                          form="loglinear", n_boot=n_boot)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"report: no default fit ({err})", file=sys.stderr)
        return []
    if len(table.runs) < 3:
        return []
    paths = analysis.write_outputs(result, table, os.path.join(sweep_dir, "scaling"), f"fit_{x}_{metric.replace('@', '')}")
    return [paths["json"]]


def fit_section(path: str) -> str:
    with open(path) as f:
        fit = json.load(f)
    rows = [[_esc(k), _num(v), f"[{_num(fit['ci95'].get(k, [None, None])[0])}, {_num(fit['ci95'].get(k, [None, None])[1])}]"]
            for k, v in fit["params"].items()]
    if fit.get("r") is not None:
        rows.append(["Pearson r", _num(fit["r"], 3), ""])
    text = (f"<h3>{_esc(fit['form'])} fit of {_esc(fit['metric'])} against {_esc(fit['x'])} "
            f"({_esc(fit.get('n_runs', '?'))} runs)</h3>" + html_table(["parameter", "value", "95 % interval"], rows))
    flags = {k: v for k, v in (fit.get("flags") or {}).items() if v}
    if flags:
        text += f"<p class=\"meta\">flags: {_esc(json.dumps(flags))}</p>"
    png = os.path.splitext(path)[0] + ".png"
    if os.path.isfile(png):
        text += media(png, f"{_esc(os.path.basename(png))}: points, fitted curve and its 95 % band")
    return text


def sweep_report(sweep_dir: str, metrics: tuple[str, ...] = ("R@3", "FID", "MM-Dist"), fit: bool = True) -> str:
    """The HTML text of a sweep's report."""
    from handx_jax.scaling import progress

    from handx_jax.scaling import launch

    state = progress.sweep_progress(sweep_dir)
    manifest_name = launch.read_manifest(sweep_dir).get("name") or os.path.basename(os.path.abspath(sweep_dir))
    rows = state["points"]
    header = ["point", "state", "step", "last loss", "eval loss", "elapsed"] + [f"{_esc(m)} (± 95 %)" for m in metrics]
    table_rows = []
    for r in rows:
        cells = [_esc(r["id"]), f"<span class=\"{'ok' if r['state'] == 'done' else 'bad' if r['state'] == 'failed' else ''}\">"
                 f"{_esc(r['state'])}</span>", f"{_esc(r['step'] if r['step'] is not None else '-')} / {r['steps']}",
                 _num(r["loss"]), _num(r["eval_loss"]), _esc(progress.format_duration(r["elapsed_seconds"]))]
        for m in metrics:
            ci = r["eval"].get(f"{m}_ci95")
            cells.append(_num(r["eval"].get(m)) + (f" ± {_num(ci, 2)}" if ci is not None else ""))
        table_rows.append(cells)
    counts = ", ".join(f"{n} {s}" for s, n in state["counts"].items() if n)
    sections = [f"<p class=\"meta\">{_esc(os.path.abspath(sweep_dir))}: {len(rows)} points ({_esc(counts)}); "
                f"evaluator {_esc(state['evaluator']['state'])}</p>", "<h2>Points</h2>",
                html_table(header, table_rows), "<h2>Loss curves</h2>"]
    fig = sweep_curves(rows)
    sections.append(f"<figure><img alt=\"loss curves\" src=\"{fig}\"></figure>" if fig else "<p>no point has logged yet</p>")
    fits = find_fits(sweep_dir)
    if not fits and fit:
        fits = fit_default(sweep_dir)
    sections.append("<h2>Scaling fits</h2>")
    sections += [fit_section(p) for p in fits] or ["<p>no fits yet (<code>handx scaling fit</code>; "
                                                   "the report fits R@3 against FLOPs once three points are evaluated)</p>"]
    renders = find_renders(sweep_dir, os.path.join(sweep_dir, "renders"))
    if renders:
        sections.append("<h2>Samples</h2>")
        sections += [media(p, _esc(os.path.basename(p))) for p in renders]
    return page(f"Sweep {manifest_name}", sections)


def write_sweep_report(sweep_dir: str, out: str | None = None, *, fit: bool = True) -> str:
    out = out or os.path.join(sweep_dir, "report.html")
    return write_html(out, sweep_report(sweep_dir, fit=fit))


def write_report(path: str, out: str | None = None, **kwargs) -> str:
    """A sweep directory (with sweep.json) or a run directory (config.json / metrics.jsonl)."""
    if os.path.isfile(os.path.join(path, "sweep.json")):
        return write_sweep_report(path, out)
    if os.path.isfile(os.path.join(path, "metrics.jsonl")) or os.path.isfile(os.path.join(path, "config.json")):
        return write_run_report(path, out, **kwargs)
    raise ValueError(f"{path}: neither a sweep directory (sweep.json) nor a run directory (metrics.jsonl, config.json)")
