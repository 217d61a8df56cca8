"""Sweep launchers: local (run every point here), SLURM (sbatch array) and TPU VM pods.

`plan_sweep` turns a sweep into a manifest (`OUT/sweep.json`): per point the `handx`
argument lists of its train and evaluate stages and its run directory (`OUT/runs/<id>`);
once per sweep, before the points, the shared stages: a synthetic dataset
(`OUT/synthetic_data`), an evaluator (`OUT/evaluator`) and the frozen text tower whose
caption embeddings condition the points (`OUT/text_tower`). Every backend executes the same manifest through `run_point`, which
keeps one status file per point (`OUT/status/<id>.json`, written atomically: running,
done or failed, with the pid and host), logs per stage (`OUT/logs/<id>.<stage>.log`),
and skips points already done, so re-launching resumes an interrupted sweep (the
trainer itself resumes a point from its last checkpoint).

Also a small CLI for the cluster scripts: `python -m handx_jax.scaling.launch
run-point|run-evaluator|slurm-env ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from handx_jax import configlib
from handx_jax.scaling import sweeps as sweeps_lib
from handx_jax.scaling.runs import SYNTHETIC_DATA_DIRNAME
from handx_jax.train import run_lock

MANIFEST = "sweep.json"
EVALUATOR_ID = "_evaluator"
TEXT_TOWER_ID = "_text_tower"
FSQ_ID = "_fsq_cb"  # + codebook: the sweep's motion tokenizer for that codebook
STATES = ("pending", "running", "done", "failed", "interrupted", "stale")
DEFAULT_PORT_BASE = 20000
KEY_CHARS = 8  # of the config hash, in a point's id and directory


# ---------------------------------------------------------------------------- planning


def plan_sweep(sweep: sweeps_lib.Sweep, out_dir: str, *, evaluate: bool = True) -> dict:
    """The manifest of a sweep: data, evaluator and per-point commands (no side effects)."""
    out_dir = os.path.abspath(out_dir)
    data_dir = sweep.data.get("dir") or os.path.join(out_dir, SYNTHETIC_DATA_DIRNAME)
    synthetic = not sweep.data.get("dir")
    evaluator_dir = sweep.evaluator.get("workdir") or os.path.join(out_dir, "evaluator")
    tower_dir = os.path.abspath(sweep.text_tower.get("workdir") or os.path.join(out_dir, "text_tower"))
    points, uses_tower = [], False
    qualities = set()
    for point in sweep.points:
        point_data = sweeps_lib.point_data_dir(data_dir, point, synthetic)
        if point.quality != "high":
            qualities.add(point.quality)
        config = sweeps_lib.point_config(sweep, point, point_data, tower_dir)
        if point.codebook is not None:
            config = configlib.apply_overrides(config, sweeps_lib.fsq_overrides(point, out_dir))
        steps = sweeps_lib.resolve_steps(sweep, point, config)
        with config.ignore_type():
            config.train.steps = steps
        eval_args = sweeps_lib.evaluate_args(sweep, point.family) if evaluate else None
        key = sweeps_lib.config_hash(config, out_dir, {"family": point.family, "evaluate": eval_args})
        point_id = f"{point.point_id}-{key[:KEY_CHARS]}"  # a changed point is a new point
        workdir = os.path.join(out_dir, "runs", point_id)
        tower = sweeps_lib.tower_overrides(sweep, config, tower_dir)
        uses_tower = uses_tower or bool(tower)
        overrides = (sweeps_lib.point_overrides(sweep, point, point_data) + tower
                     + sweeps_lib.fsq_overrides(point, out_dir) + [f"train.steps={steps}"])
        train_argv = ["train", "--config", point.config_spec(sweep.runlocal), "--workdir", workdir]
        train_argv += [f"--config.{o}" for o in overrides]
        eval_argv = ["evaluate", "--workdir", workdir, "--evaluator", evaluator_dir]
        eval_argv += sweeps_lib.evaluate_args(sweep, point.family)
        points.append({
            "id": point_id, "name": point.point_id, "config_hash": key, "family": point.family, "size": point.label or point.size,
            "base_size": point.size, "data": point.data, "seed": point.seed, "steps": steps,
            "compute_budget": point.compute_budget, "workdir": workdir,
            "batch_size": int(config.train.batch_size),
            "train": train_argv, "evaluate": eval_argv if evaluate else None,
        })
    evaluator_argv = None
    if evaluate:
        spec = sweep.evaluator.get("config", "configs/evaluator.py")
        evaluator_argv = ["evaluator", "train", "--config", spec, "--workdir", evaluator_dir,
                          "--data", data_dir]
        evaluator_argv += [f"--config.{o}" for o in sweep.evaluator.get("overrides") or []]
    tower_argv = None
    if uses_tower:
        tower_argv = ["text", "tower", "--data", data_dir, "--workdir", tower_dir, "--config", sweep.tower_spec()]
        tower_argv += [f"--config.{o}" for o in sweep.text_tower.get("overrides") or []]
    fsq = {}
    for codebook in sorted({p.codebook for p in sweep.points if p.codebook is not None}):
        spec = str(sweep.fsq.get("config") or ("configs/fsq.py:size=T,runlocal" if sweep.runlocal else "configs/fsq.py"))
        workdir = sweeps_lib.fsq_dir(out_dir, codebook)
        argv = ["train", "--config", f"{spec},codebook={codebook}", "--workdir", workdir, f"--config.data.dir={data_dir}"]
        fsq[str(codebook)] = {"workdir": workdir, "train": argv + [f"--config.{o}" for o in sweep.fsq.get("overrides") or []]}
    return {
        "name": sweep.name, "spec": sweep.spec, "out": out_dir, "fsq": fsq,
        "data": {"dir": data_dir, "synthetic": synthetic,
                 "num_train": int(sweep.data.get("num_synthetic_clips", 512)),
                 "num_test": int(sweep.data.get("num_test_clips", 64)),
                 "qualities": {q: f"{os.path.normpath(data_dir)}_{q}" for q in sorted(qualities)}},
        "evaluator": {"workdir": evaluator_dir, "train": evaluator_argv},
        "text_tower": {"workdir": tower_dir, "train": tower_argv},
        "points": points,
    }


def write_manifest(manifest: dict) -> str:
    os.makedirs(manifest["out"], exist_ok=True)
    path = os.path.join(manifest["out"], MANIFEST)
    _write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(out_or_path: str) -> dict:
    path = out_or_path if out_or_path.endswith(".json") else os.path.join(out_or_path, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no sweep manifest (run `handx sweep launch` first)")
    with open(path) as f:
        return json.load(f)


def command_line(argv: list[str], program: str = "handx") -> str:
    return " ".join([program] + [shlex.quote(a) for a in argv])


# ----------------------------------------------------------------------------- status


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def status_path(out_dir: str, point_id: str) -> str:
    return os.path.join(out_dir, "status", f"{point_id}.json")


def write_status(out_dir: str, point_id: str, state: str, **info) -> None:
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    os.makedirs(os.path.join(out_dir, "status"), exist_ok=True)
    record = {"state": state, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "host": socket.gethostname(), "pid": os.getpid(), **info}
    _write_atomic(status_path(out_dir, point_id), json.dumps(record) + "\n")


def read_status(out_dir: str, point_id: str) -> dict:
    """The point's status; a `running` point whose process on this host is gone reads
    `interrupted` (a killed launcher), so it will be resumed."""
    path = status_path(out_dir, point_id)
    if not os.path.isfile(path):
        return {"state": "pending"}
    try:
        with open(path) as f:
            record = json.load(f)
    except json.JSONDecodeError:
        return {"state": "pending", "detail": f"{path} unreadable"}
    if record.get("state") == "running" and record.get("host") == socket.gethostname():
        if not _pid_alive(int(record.get("pid", -1))):
            record["state"] = "interrupted"
    return record


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_status(out_dir: str) -> list[dict]:
    """One row per point: id, state, last logged step / planned steps, eval metrics, detail."""
    manifest = read_manifest(out_dir)
    rows = []
    for point in manifest["points"]:
        record = read_status(manifest["out"], point["id"])
        row = {"id": point["id"], "state": record["state"], "steps": point["steps"],
               "step": None, "eval": {}, "detail": record.get("detail", "")}
        metrics_path = os.path.join(point["workdir"], "metrics.jsonl")
        if os.path.isfile(metrics_path):
            with open(metrics_path) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if "step" in rec and "loss" in rec:
                        row["step"] = rec["step"]
                    row["eval"].update({k[5:]: v for k, v in rec.items() if k.startswith("eval/")})
        rows.append(row)
    for stale in stale_points(manifest):
        rows.append({"id": stale["id"], "state": "stale", "steps": "?", "step": None, "eval": {},
                     "detail": f"not in the current plan (was {stale['was']})"})
    return rows


def stale_points(manifest: dict) -> list[dict]:
    """Points of earlier plans in this sweep directory (a status file or run directory whose
    id, name plus config hash, the manifest no longer has): `{id, state: "stale", was, workdir}`."""
    out = manifest["out"]
    current = {p["id"] for p in manifest["points"]} | {EVALUATOR_ID, TEXT_TOWER_ID}
    current |= {f"{FSQ_ID}{cb}" for cb in manifest.get("fsq") or {}}
    found = set()
    if os.path.isdir(os.path.join(out, "status")):
        found |= {n[:-5] for n in os.listdir(os.path.join(out, "status")) if n.endswith(".json")}
    if os.path.isdir(os.path.join(out, "runs")):
        found |= {n for n in os.listdir(os.path.join(out, "runs")) if os.path.isdir(os.path.join(out, "runs", n))}
    return [{"id": i, "state": "stale", "was": read_status(out, i)["state"],
             "workdir": os.path.join(out, "runs", i)} for i in sorted(found - current)]


def format_status(rows: list[dict], metrics: tuple[str, ...] = ("R@3", "FID")) -> str:
    lines = [f"{'point':<36} {'state':<12} {'step':>13} " + " ".join(f"{m:>9}" for m in metrics)]
    for row in rows:
        step = f"{row['step'] if row['step'] is not None else '-'}/{row['steps']}"
        values = " ".join(f"{_fmt(row['eval'].get(m)):>9}" for m in metrics)
        lines.append(f"{row['id']:<36} {row['state']:<12} {step:>13} {values}"
                     + (f"  {row['detail']}" if row["detail"] else ""))
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(rows)})")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{float(value):.4g}"


# ---------------------------------------------------------------------------- running


class StageInterrupted(KeyboardInterrupt):
    """The launcher got SIGINT/SIGTERM; its running stage was stopped (and has exited)."""


STOP_GRACE_S = 60.0  # a stopped stage gets this long to checkpoint before SIGKILL


def _prctl():
    """libc's prctl, resolved in the launcher (never loaded in a freshly forked child)."""
    global _PRCTL
    if _PRCTL is None:
        try:
            import ctypes

            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _PRCTL = False
    return _PRCTL


_PRCTL = None


def _die_with_parent_fn():
    """A preexec function for the stage: SIGTERM when the launcher dies, even by SIGKILL
    (Linux PR_SET_PDEATHSIG); a launcher already gone by then ends the stage at once."""
    prctl, parent = _prctl(), os.getpid()

    def preexec():
        if prctl:
            prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(143)

    return preexec


def _stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the stage's process group, then SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; its group may not be
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _run_stage(argv: list[str], log_path: str, *, python: str, env: dict | None) -> int:
    """Run one `handx` stage as a child process in its own process group, appending its
    output to a log. SIGINT/SIGTERM to the launcher are passed to the stage as SIGTERM (the
    trainer checkpoints and exits), then StageInterrupted is raised; the stage never outlives
    the launcher (its group is stopped on any exit, and it gets SIGTERM if the launcher dies)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    cmd = [python, "-m", "handx_jax.cli"] + argv
    received = []
    with open(log_path, "a") as log:
        log.write(f"\n=== {datetime.datetime.now().isoformat(timespec='seconds')} {command_line(argv)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=sweeps_lib.REPO_ROOT,
                                env=env, start_new_session=True, preexec_fn=_die_with_parent_fn())

        def forward(signum, frame):
            received.append(signum)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            rc = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if proc.poll() is None:
                _stop_group(proc)
            else:
                try:  # the stage's own children, if any were left behind
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    if received:
        raise StageInterrupted(f"stopped by signal {received[0]} ({command_line(argv)})")
    return rc


def prepare_data(manifest: dict) -> None:
    """Write the sweep's shared synthetic dataset once (skipped when it exists)."""
    data = manifest["data"]
    from handx_jax.data import manifest as data_manifest

    if not data["synthetic"] or data_manifest.is_complete(data["dir"]):
        return  # an interrupted generation (no manifest) is written again
    from handx_jax.data import synthetic

    print(f"writing {data['num_train']} synthetic train clips to {data['dir']}", file=sys.stderr)
    synthetic.write_dataset(data["dir"], data["num_train"], data["num_test"], seed=0)


def prepare_quality_data(manifest: dict) -> None:
    """Lower-quality variants of the sweep's synthetic data (same clips, degraded train split,
    clean test split), sharing the clean dataset's tokenizer and normalisation statistics
    so that every point's held-out loss is measured in the same units on the same clips."""
    import shutil

    from handx_jax.data import manifest as data_manifest
    from handx_jax.data import normalization, synthetic

    data = manifest["data"]
    variants = data.get("qualities") or {}
    if not variants:
        return
    representations = ("joint_pos", "joint_pos_w_scalar_rot")  # the evaluator's and the generators'
    shared = [name for name in ("spm.model", "spm.vocab") if os.path.exists(os.path.join(data["dir"], name))]
    for rep in representations:
        normalization.load_or_compute_stats(data["dir"], rep)
        shared.append(os.path.basename(normalization.stats_path(data["dir"], rep)))
    for quality, directory in variants.items():
        if not data_manifest.is_complete(directory):
            print(f"writing {data['num_train']} {quality}-quality synthetic train clips to {directory}", file=sys.stderr)
            synthetic.write_dataset(directory, data["num_train"], data["num_test"], seed=0, quality=quality,
                                    test_quality="high")
        for name in shared:
            target = os.path.join(directory, name)
            if not os.path.exists(target):
                shutil.copyfile(os.path.join(data["dir"], name), target + ".tmp")
                os.replace(target + ".tmp", target)


def lock_dir(out: str, stage_id: str) -> str:
    """The directory whose run lock one launcher holds while it runs a point or shared stage."""
    return os.path.join(out, "locks", stage_id)


def run_evaluator(manifest: dict, *, python: str = sys.executable, env: dict | None = None) -> str:
    """The shared stages, once per sweep: data, the evaluator, the text tower (with its caption
    embeddings); returns 'done' or 'failed'. One launcher at a time (RunLockedError)."""
    with run_lock.hold(lock_dir(manifest["out"], "_shared"), what="sweep shared stages"):
        return _run_evaluator(manifest, python=python, env=env)


def _run_evaluator(manifest: dict, *, python: str, env: dict | None) -> str:
    prepare_data(manifest)
    stages = ((EVALUATOR_ID, manifest["evaluator"]["train"], "evaluator"),
              (TEXT_TOWER_ID, (manifest.get("text_tower") or {}).get("train"), "text_tower"))
    stages += tuple((f"{FSQ_ID}{cb}", entry["train"], f"fsq_cb{cb}") for cb, entry in (manifest.get("fsq") or {}).items())
    for stage_id, argv, name in stages:
        if _run_shared_stage(manifest["out"], stage_id, argv, name, python=python, env=env) != "done":
            return "failed"
    prepare_quality_data(manifest)  # after the stages that train the clean data's tokenizer
    return "done"


def _run_shared_stage(out: str, stage_id: str, argv: list[str] | None, name: str, *, python: str,
                      env: dict | None) -> str:
    if argv is None or read_status(out, stage_id)["state"] == "done":
        return "done"
    write_status(out, stage_id, "running")
    try:
        rc = _run_stage(argv, os.path.join(out, "logs", f"{name}.log"), python=python, env=env)
    except StageInterrupted:
        write_status(out, stage_id, "interrupted", detail="stopped by a signal to the launcher")
        raise
    state = "done" if rc == 0 else "failed"
    write_status(out, stage_id, state, rc=rc, detail="" if rc == 0 else f"see logs/{name}.log")
    if state == "failed":
        print(f"{name} stage failed: see {out}/logs/{name}.log", file=sys.stderr)
    return state


def run_point(manifest: dict, index: int, *, python: str = sys.executable, env: dict | None = None,
              write: bool = True, evaluate_env: dict | None = None) -> str:
    """Train then evaluate one point unless it is done; returns its final state.

    `write` is False on every process but the first of a multi-process job: all of them
    train, only the first records status and evaluates (and holds the point's lock, so a
    second launcher of the same point is refused with RunLockedError).
    """
    out, pid = manifest["out"], manifest["points"][index]["id"]
    lock = run_lock.hold(lock_dir(out, pid), what=f"sweep point {pid}") if write else contextlib.nullcontext()
    with lock:
        try:
            return _run_point(manifest, index, python=python, env=env, write=write, evaluate_env=evaluate_env)
        except StageInterrupted:
            if write:
                write_status(out, pid, "interrupted", detail="stopped by a signal to the launcher")
            raise


def _run_point(manifest: dict, index: int, *, python: str, env: dict | None, write: bool,
               evaluate_env: dict | None) -> str:
    out = manifest["out"]
    point = manifest["points"][index]
    pid = point["id"]
    if read_status(out, pid)["state"] == "done":
        return "done"
    if write:
        write_status(out, pid, "running", stage="train")
    started = time.time()
    rc = _run_stage(point["train"], os.path.join(out, "logs", f"{pid}.train.log"), python=python, env=env)
    if rc != 0:
        if write:
            write_status(out, pid, "failed", stage="train", rc=rc, detail=f"train rc={rc}, see logs/{pid}.train.log")
        return "failed"
    if not write:
        return "done"
    if point.get("evaluate"):
        write_status(out, pid, "running", stage="evaluate")
        rc = _run_stage(point["evaluate"], os.path.join(out, "logs", f"{pid}.evaluate.log"),
                        python=python, env=evaluate_env if evaluate_env is not None else env)
        if rc != 0:
            write_status(out, pid, "failed", stage="evaluate", rc=rc,
                         detail=f"evaluate rc={rc}, see logs/{pid}.evaluate.log")
            return "failed"
    write_status(out, pid, "done", seconds=round(time.time() - started, 1))
    return "done"


def run_local(manifest: dict, *, python: str = sys.executable, keep_going: bool = True) -> dict:
    """Run every point of the manifest here, one after another; returns state counts. Holds
    the sweep directory's run lock (a second local launcher gets RunLockedError); a signal
    stops the running stage and raises StageInterrupted."""
    with run_lock.hold(manifest["out"], what=f"handx sweep launch {manifest['name']}"):
        return _run_local(manifest, python=python, keep_going=keep_going)


def _run_local(manifest: dict, *, python: str, keep_going: bool) -> dict:
    from tqdm.auto import tqdm

    counts = {s: 0 for s in STATES}
    if run_evaluator(manifest, python=python) != "done":
        counts["failed"] = len(manifest["points"])
        return counts
    bar = tqdm(range(len(manifest["points"])), desc=f"sweep {manifest['name']}", unit="point")
    for index in bar:
        bar.set_postfix_str(manifest["points"][index]["id"])
        state = run_point(manifest, index, python=python)
        counts[state] += 1
        if state == "failed" and not keep_going:
            break
    return counts


# --------------------------------------------------------------------- SLURM wiring


def expand_hostlist(nodelist: str) -> list[str]:
    """Expand a SLURM host list such as `gpu[001-003,007],cpu5` into host names."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("empty SLURM node list")
    items, depth, start = [], 0, 0
    for i, ch in enumerate(nodelist):  # split on commas outside brackets
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(nodelist[start:i])
            start = i + 1
    items.append(nodelist[start:])
    hosts = []
    for item in items:
        hosts.extend(_expand_item(item))
    return hosts


def _expand_item(item: str) -> list[str]:
    match = re.search(r"\[([^\]]+)\]", item)
    if not match:
        return [item]
    prefix, suffix = item[:match.start()], item[match.end():]
    out = []
    for part in match.group(1).split(","):
        lo, dash, hi = part.partition("-")
        if dash:
            width = len(lo)
            values = [str(v).zfill(width) for v in range(int(lo), int(hi) + 1)]
        else:
            values = [lo]
        for value in values:
            out.extend(_expand_item(prefix + value + suffix))
    return out


def distributed_env_from_slurm(environ: dict, port: int | None = None) -> dict:
    """`jax.distributed.initialize` arguments from SLURM's variables.

    coordinator: the first host of the step's node list, on a port derived from the job
    id (so array tasks sharing a node do not collide) unless given or set in
    HANDX_COORDINATOR_PORT; num_processes = SLURM_NTASKS; process_id = SLURM_PROCID.
    """
    def need(*names):
        for name in names:
            if environ.get(name):
                return environ[name]
        raise ValueError(f"SLURM environment lacks {' / '.join(names)} (is this inside srun?)")

    nodelist = need("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    num_processes = int(need("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"))
    process_id = int(need("SLURM_PROCID"))
    if not 0 <= process_id < num_processes:
        raise ValueError(f"SLURM_PROCID={process_id} outside 0..{num_processes - 1}")
    if port is None:
        port = int(environ.get("HANDX_COORDINATOR_PORT") or
                   DEFAULT_PORT_BASE + int(need("SLURM_JOB_ID")) % 20000)
    host = expand_hostlist(nodelist)[0]
    return {"coordinator_address": f"{host}:{port}", "num_processes": num_processes,
            "process_id": process_id}


def distributed_env_vars(dist: dict) -> dict:
    """The variables `handx_jax.train.distributed.maybe_initialize_distributed` reads."""
    return {"HANDX_DISTRIBUTED": "1" if dist["num_processes"] > 1 else "0",
            "JAX_COORDINATOR_ADDRESS": dist["coordinator_address"],
            "JAX_NUM_PROCESSES": str(dist["num_processes"]),
            "JAX_PROCESS_ID": str(dist["process_id"])}


def slurm_scripts(manifest: dict, *, nodes: int = 1, tasks_per_node: int = 1, gpus_per_node: int = 0,
                  time_limit: str = "24:00:00", partition: str | None = None, account: str | None = None,
                  max_parallel: int | None = None, python: str = "python",
                  setup: str = "") -> dict[str, str]:
    """`evaluator.sbatch`, `sweep.sbatch` (one array task per point) and `submit.sh`."""
    out = manifest["out"]
    q = shlex.quote
    n = len(manifest["points"])
    common = [f"#SBATCH --time={time_limit}"]
    if partition:
        common.append(f"#SBATCH --partition={partition}")
    if account:
        common.append(f"#SBATCH --account={account}")
    setup_lines = setup.strip() + "\n" if setup.strip() else ""
    evaluator = "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name=handx-{manifest['name']}-evaluator",
        "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
        *([f"#SBATCH --gpus-per-node={min(gpus_per_node, 1)}"] if gpus_per_node else []),
        *common,
        f"#SBATCH --output={out}/logs/slurm-evaluator-%j.out",
        "set -euo pipefail",
        f"cd {q(sweeps_lib.REPO_ROOT)}",
        setup_lines.rstrip("\n"),
        f"{python} -m handx_jax.scaling.launch run-evaluator --manifest {q(os.path.join(out, MANIFEST))}",
        "",
    ])
    array = f"0-{n - 1}" + (f"%{max_parallel}" if max_parallel else "")
    sweep = "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name=handx-{manifest['name']}",
        f"#SBATCH --array={array}",
        f"#SBATCH --nodes={nodes}",
        f"#SBATCH --ntasks-per-node={tasks_per_node}",
        *([f"#SBATCH --gpus-per-node={gpus_per_node}"] if gpus_per_node else []),
        *common,
        f"#SBATCH --output={out}/logs/slurm-%A_%a.out",
        "set -euo pipefail",
        f"cd {q(sweeps_lib.REPO_ROOT)}",
        setup_lines.rstrip("\n"),
        f"MANIFEST={q(os.path.join(out, MANIFEST))}",
        "# One process per task; each derives jax.distributed's coordinator, process count and",
        "# id from SLURM_STEP_NODELIST / SLURM_NTASKS / SLURM_PROCID (launch.distributed_env_from_slurm).",
        f'srun --kill-on-bad-exit=1 {python} -m handx_jax.scaling.launch run-point --manifest "$MANIFEST" '
        '--index "$SLURM_ARRAY_TASK_ID" --slurm',
        "",
    ])
    # slurmd opens each job's --output file before the job starts: a missing directory
    # fails the job at once (and leaves the dependent array waiting forever).
    log_dirs = sorted(slurm_output_dirs({"evaluator.sbatch": evaluator, "sweep.sbatch": sweep}))
    submit = "\n".join([
        "#!/bin/bash",
        "# The shared stages first (synthetic data, evaluator, text tower), then the sweep as an array job.",
        "set -euo pipefail",
        *[f"mkdir -p {q(d)}" for d in log_dirs],
        f"cd {q(os.path.join(out, 'slurm'))}",
        "evaluator_job=$(sbatch --parsable evaluator.sbatch)",
        'sbatch --dependency=afterok:"${evaluator_job%%;*}" sweep.sbatch',
        "",
    ])
    return {"evaluator.sbatch": evaluator, "sweep.sbatch": sweep, "submit.sh": submit}


def slurm_output_dirs(scripts: dict[str, str]) -> set[str]:
    """Directories named by the scripts' `#SBATCH --output=`/`--error=` lines."""
    dirs = set()
    for text in scripts.values():
        for line in text.splitlines():
            for flag in ("--output=", "--error="):
                if line.startswith("#SBATCH " + flag):
                    dirs.add(os.path.dirname(line[len("#SBATCH " + flag):].strip()))
    return {d for d in dirs if d}


def tpu_script(manifest: dict, *, tpu_name: str, zone: str, project: str | None = None,
               repo_dir: str = "~/handx-jax", python: str = "python3") -> str:
    """A bash script of `gcloud compute tpus tpu-vm ssh` commands: each point trains on all
    workers of the pod (`--worker=all`; JAX finds its peers from the TPU metadata), then
    evaluates on worker 0. OUT must be on storage every worker sees (e.g. a mounted
    bucket or NFS); the script first copies the manifest to every worker."""
    q = shlex.quote
    out = manifest["out"]
    manifest_path = os.path.join(out, MANIFEST)
    target = [f"--zone={q(zone)}"] + ([f"--project={q(project)}"] if project else [])
    ssh = f"gcloud compute tpus tpu-vm ssh {q(tpu_name)} " + " ".join(target)
    lines = [
        "#!/bin/bash",
        f"# Sweep {manifest['name']}: {len(manifest['points'])} points on TPU VM {tpu_name}.",
        "set -euo pipefail",
        f"{ssh} --worker=all --command={q('mkdir -p ' + q(out))}",
        f"gcloud compute tpus tpu-vm scp {q(manifest_path)} {q(tpu_name + ':' + manifest_path)} "
        + " ".join(target) + " --worker=all",
        f"{ssh} --worker=0 --command="
        + q(f"cd {repo_dir} && {python} -m handx_jax.scaling.launch run-evaluator --manifest {q(manifest_path)}"),
    ]
    for index, point in enumerate(manifest["points"]):
        run = f"cd {repo_dir} && HANDX_DISTRIBUTED=1 {python} -m handx_jax.scaling.launch run-point " \
              f"--manifest {q(manifest_path)} --index {index} --tpu"
        lines.append(f"# {point['id']}: {point['steps']} steps")
        lines.append(f"{ssh} --worker=all --command={q(run)}")
    return "\n".join(lines) + "\n"


def write_scripts(manifest: dict, scripts: dict[str, str], subdir: str) -> list[str]:
    folder = os.path.join(manifest["out"], subdir)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, text in scripts.items():
        path = os.path.join(folder, name)
        _write_atomic(path, text)
        os.chmod(path, 0o755)
        paths.append(path)
    return paths


# -------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Entry of the cluster scripts: run-point, run-evaluator, slurm-env."""
    parser = argparse.ArgumentParser(prog="python -m handx_jax.scaling.launch")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run-point", help="train and evaluate one point of a manifest")
    p.add_argument("--manifest", required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--slurm", action="store_true", help="wire jax.distributed from SLURM variables")
    p.add_argument("--tpu", action="store_true", help="TPU pod worker: only worker 0 records and evaluates")
    p = sub.add_parser("run-evaluator", help="the shared stages once: synthetic data, the evaluator and the text tower")
    p.add_argument("--manifest", required=True)
    sub.add_parser("slurm-env", help="print `export` lines for jax.distributed from SLURM variables")
    args = parser.parse_args(argv)

    if args.cmd == "slurm-env":
        for key, value in distributed_env_vars(distributed_env_from_slurm(os.environ)).items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    manifest = read_manifest(args.manifest)
    if args.cmd == "run-evaluator":
        try:
            return 0 if run_evaluator(manifest) == "done" else 1
        except run_lock.RunLockedError as err:
            print(f"error: {err}", file=sys.stderr)
            return run_lock.EXIT_LOCKED
        except StageInterrupted as err:
            print(f"interrupted: {err}", file=sys.stderr)
            return 130
    env, write, eval_env = None, True, None
    if args.slurm:
        dist = distributed_env_from_slurm(os.environ)
        env = {**os.environ, **distributed_env_vars(dist)}
        write = dist["process_id"] == 0
        eval_env = {**os.environ, "HANDX_DISTRIBUTED": "0"}
    elif args.tpu:
        write = int(os.environ.get("TPU_WORKER_ID", os.environ.get("CLOUD_TPU_TASK_ID", "0")) or 0) == 0
        eval_env = {**os.environ, "HANDX_DISTRIBUTED": "0"}
    if args.index < 0 or args.index >= len(manifest["points"]):
        parser.error(f"--index {args.index} outside 0..{len(manifest['points']) - 1}")
    try:
        state = run_point(manifest, args.index, env=env, write=write, evaluate_env=eval_env)
    except run_lock.RunLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        return run_lock.EXIT_LOCKED
    except StageInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 130
    return 0 if state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
