"""What a sweep is doing: per point the stage, step / total, last loss, eval loss, elapsed
time and estimated time left, read from the manifest, the status files and each run's
metrics.jsonl; `watch` redraws it until every point has finished.

The estimate for a training point is its remaining steps times its recent step time, less
the time since its last logged line; a pending point is estimated from the finished ones
(their wall-clock seconds per planned step), so the sweep total is a rough figure.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

from handx_jax.scaling import launch

RECENT_LINES = 5  # step times averaged for the estimate
EVAL_LOSS_KEYS = ("eval/loss", "eval_loss", "val_loss", "eval/val_loss")


def _read_lines(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
    return out


def _iso_seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def run_progress(workdir: str, total_steps: int, now: float | None = None) -> dict:
    """From one run's metrics.jsonl: step, last loss, eval loss, eval metrics, seconds spent
    training so far and the training time left (None when unknown)."""
    now = time.time() if now is None else now
    lines = _read_lines(os.path.join(workdir, "metrics.jsonl"))
    train = [r for r in lines if "loss" in r and "step" in r]
    evals: dict = {}
    for r in lines:
        evals.update({k[5:]: v for k, v in r.items() if k.startswith("eval/")})
    out = {"step": None, "loss": None, "eval_loss": None, "eval": evals, "train_seconds": None,
           "eta_seconds": None, "last_log": None}
    for key in EVAL_LOSS_KEYS:
        for r in lines:
            if key in r:
                out["eval_loss"] = r[key]
    if not train:
        return out
    last = train[-1]
    out.update(step=int(last["step"]), loss=last["loss"], last_log=last.get("wall_time"))
    times = [float(r["step_time"]) for r in train[-RECENT_LINES:] if isinstance(r.get("step_time"), (int, float))]
    walls = [r["wall_time"] for r in train if isinstance(r.get("wall_time"), (int, float))]
    if len(walls) >= 1 and times:
        out["train_seconds"] = walls[-1] - walls[0] + times[0] * int(train[0]["step"])
    if times and total_steps:
        left = max(total_steps - out["step"], 0) * (sum(times) / len(times))
        if out["last_log"]:
            left -= max(now - out["last_log"], 0.0)
        out["eta_seconds"] = max(left, 0.0)
    return out


def sweep_progress(out_dir: str, now: float | None = None) -> dict:
    """`{"evaluator": status, "points": [row...], "counts": {state: n}, "eta_seconds"}`; each row
    has id, state, stage, step, steps, loss, eval_loss, eval, elapsed_seconds, eta_seconds, detail."""
    now = time.time() if now is None else now
    manifest = launch.read_manifest(out_dir)
    out = manifest["out"]
    rows = []
    for point in manifest["points"]:
        status = launch.read_status(out, point["id"])
        progress = run_progress(point["workdir"], int(point["steps"]), now)
        state = status["state"]
        stage = status.get("stage", "") if state in ("running", "failed", "interrupted") else ""
        started = _iso_seconds(status.get("time")) if state == "running" else None
        if state == "done":
            elapsed = status.get("seconds")
        elif started is not None and stage == "train":
            elapsed = progress["train_seconds"] if progress["train_seconds"] is not None else now - started
        else:
            elapsed = (now - started) if started is not None else progress["train_seconds"]
        eta = 0.0 if state == "done" else (progress["eta_seconds"] if state == "running" and stage == "train" else None)
        rows.append({"id": point["id"], "state": state, "stage": stage, "step": progress["step"],
                     "steps": int(point["steps"]), "loss": progress["loss"], "eval_loss": progress["eval_loss"],
                     "eval": progress["eval"], "elapsed_seconds": elapsed, "eta_seconds": eta,
                     "detail": status.get("detail", ""), "workdir": point["workdir"]})
    done = [r for r in rows if r["state"] == "done" and r["elapsed_seconds"]]
    per_step = (sum(r["elapsed_seconds"] for r in done) / sum(r["steps"] for r in done)) if done else None
    for r in rows:
        if r["state"] in ("pending", "interrupted") and per_step is not None:
            r["eta_seconds"] = per_step * (r["steps"] - (r["step"] or 0))
    open_rows = [r for r in rows if r["state"] not in ("done", "failed")]
    total = None if any(r["eta_seconds"] is None for r in open_rows) else sum(r["eta_seconds"] for r in open_rows)
    counts = {s: sum(r["state"] == s for r in rows) for s in launch.STATES}
    return {"evaluator": launch.read_status(out, launch.EVALUATOR_ID), "points": rows, "counts": counts,
            "eta_seconds": total, "stale": launch.stale_points(manifest)}


def format_duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _num(value) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def format_progress(progress: dict, metrics: tuple[str, ...] = ("R@3", "FID")) -> str:
    """The status table: one line per point, then the state counts and the sweep's time left."""
    evaluator = progress["evaluator"]
    lines = [f"evaluator: {evaluator['state']}" + (f" ({evaluator['detail']})" if evaluator.get("detail") else "")]
    header = (f"{'point':<30} {'state':<11} {'stage':<8} {'step':>11} {'loss':>9} {'eval loss':>9} "
              f"{'elapsed':>8} {'left':>8} " + " ".join(f"{m:>8}" for m in metrics))
    lines.append(header)
    for r in progress["points"]:
        step = f"{r['step'] if r['step'] is not None else '-'}/{r['steps']}"
        values = " ".join(f"{_num(r['eval'].get(m)):>8}" for m in metrics)
        lines.append(f"{r['id']:<30} {r['state']:<11} {r['stage'] or '-':<8} {step:>11} {_num(r['loss']):>9} "
                     f"{_num(r['eval_loss']):>9} {format_duration(r['elapsed_seconds']):>8} "
                     f"{format_duration(r['eta_seconds']):>8} {values}" + (f"  {r['detail']}" if r["detail"] else ""))
    counts = progress["counts"]
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(progress['points'])})"
    eta = progress["eta_seconds"]
    lines.append(summary + (f"; about {format_duration(eta)} left" if eta is not None and eta > 0 else ""))
    stale = progress.get("stale") or []
    if stale:
        lines.append(f"stale (earlier configs, not in the current plan; their runs stay in runs/): "
                     + ", ".join(f"{r['id']} ({r['was']})" for r in stale))
    return "\n".join(lines)


def finished(progress: dict) -> bool:
    return all(r["state"] in ("done", "failed") for r in progress["points"])


def watch(out_dir: str, *, interval: float = 10.0, metrics: tuple[str, ...] = ("R@3", "FID"),
          stream=None, max_updates: int | None = None) -> int:
    """Redraw the status every `interval` seconds until every point is done or failed
    (or Ctrl-C, or `max_updates` redraws); returns 1 if a point failed, else 0."""
    stream = stream or sys.stdout
    clear = "\033[2J\033[H" if stream.isatty() else ""
    updates = 0
    try:
        while True:
            progress = sweep_progress(out_dir)
            stamp = datetime.datetime.now().strftime("%H:%M:%S")
            stream.write(f"{clear}{stamp}  {out_dir}\n{format_progress(progress, metrics)}\n\n")
            stream.flush()
            updates += 1
            if finished(progress) or (max_updates is not None and updates >= max_updates):
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return 1 if progress["counts"].get("failed") else 0
