"""Run-directory logs: `config.json`, `metrics.jsonl` (one JSON object per logged step) and,
mirroring metrics.jsonl, TensorBoard event files and an optional Weights & Biases run."""

from __future__ import annotations

import json
import math
import os
import queue
import re
import sys
import threading
import time
import uuid
from typing import Any, Callable

from handx_jax.train.checkpoint import config_to_dict


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def write_config(workdir: str, config: Any) -> str:
    path = os.path.join(workdir, "config.json")
    write_json_atomic(path, config_to_dict(config))
    return path


def _clean(value: Any) -> Any:
    """Plain Python numbers for JSON; non-finite floats become strings ("nan", "inf")."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsWriter:
    """Appends one JSON line per logged step to `<workdir>/metrics.jsonl` (flushed each line)
    and hands the same line to the side writers (TensorBoard, W&B) the run's `config.json`
    asks for; `side_writers=False` turns those off."""

    def __init__(self, workdir: str, resume_step: int | None = None, enabled: bool = True,
                 side_writers: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        if enabled and resume_step is not None:
            truncate_after(self.path, resume_step)
        self._file = open(self.path, "a") if enabled else None
        purge = None if resume_step is None else resume_step + 1
        self.side = make_side_writers(workdir, purge_step=purge) if enabled and side_writers else None

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        record = _clean_record(record)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.side is not None:
            self.side.put(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.side is not None:
            self.side.close()
            self.side = None


def truncate_after(path: str, step: int) -> None:
    """Drop lines logged after `step` (a resumed run repeats them), atomically."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError):
                continue  # a line cut short by a kill
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------ TensorBoard and W&B writers
#
# metrics.jsonl stays the record the scaling tools read. Beside it, process 0 mirrors every
# logged line into TensorBoard event files (`<workdir>/tensorboard/`, tensorboardX, no
# TensorFlow) and, when asked, into a Weights & Biases run. Both run on a background
# thread fed by a queue, so a slow disk or network never delays a training step, and a
# writer that fails is reported once and dropped while training goes on.

TENSORBOARD_DIRNAME = "tensorboard"
WANDB_ID_FILE = "wandb_run_id"
WANDB_PROJECT_ENV = "HANDX_WANDB_PROJECT"  # turns W&B on without touching the config
TENSORBOARD_ENV = "HANDX_TENSORBOARD"  # "0" turns TensorBoard off
# Optional `config.train` fields (the trainer adds them with these defaults).
LOGGING_DEFAULTS = {"tensorboard": True, "wandb": {"project": "", "entity": "", "name": "", "mode": ""}}
_NOT_SCALARS = ("step", "wall_time")


def scalar_items(record: dict) -> dict[str, float]:
    """The numeric fields of a metrics line (not `step`/`wall_time`), as floats; "nan"/"inf"
    strings (how metrics.jsonl stores non-finite values) become floats again."""
    out = {}
    for key, value in record.items():
        if key in _NOT_SCALARS or isinstance(value, bool):
            continue
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            value = float(value)
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def tensorboard_tag(key: str) -> str:
    """TensorBoard's name for a metrics.jsonl key: characters outside [A-Za-z0-9_./-]
    become "_" (`eval/R@3` -> `eval/R_3`), the rule tensorboardX would apply silently."""
    return re.sub(r"[^A-Za-z0-9_./-]", "_", key)


class TensorBoardSink:
    """One event file per writer (unique suffix: two writers never share a file). On a
    resumed run `purge_step` makes TensorBoard drop the old run's events from that step on,
    as `truncate_after` drops the lines of metrics.jsonl."""

    name = "TensorBoard"

    def __init__(self, workdir: str, *, purge_step: int | None = None, config: dict | None = None):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIRNAME), purge_step=purge_step,
                                    filename_suffix=f".{os.getpid()}.{time.time_ns()}", flush_secs=30)
        if config is not None:
            text = json.dumps(config, indent=2, sort_keys=True)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)

    def write(self, record: dict) -> None:
        step, wall = int(record["step"]), record.get("wall_time")
        for key, value in scalar_items(record).items():
            self.writer.add_scalar(tensorboard_tag(key), value, step, walltime=wall)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A W&B run (`pip install -e '.[wandb]'`) in the run directory; its id is kept in
    `<workdir>/wandb_run_id` so a resumed run (or a later evaluation) continues it. Every
    metric is plotted against our `step` field, so lines logged out of order still land."""

    name = "W&B"

    def __init__(self, workdir: str, settings: dict, config: dict | None = None):
        import wandb

        id_path = os.path.join(workdir, WANDB_ID_FILE)
        if os.path.isfile(id_path):
            with open(id_path) as f:
                run_id = f.read().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            tmp = f"{id_path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(run_id + "\n")
            os.replace(tmp, id_path)
        self.run = wandb.init(project=settings["project"], entity=settings.get("entity") or None,
                              name=settings.get("name") or os.path.basename(os.path.abspath(workdir)),
                              mode=settings.get("mode") or None, dir=workdir, config=config, id=run_id,
                              resume="allow", reinit="create_new")
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def write(self, record: dict) -> None:
        self.run.log({"step": int(record["step"]), **scalar_items(record)})

    def close(self) -> None:
        self.run.finish()


def logging_settings(config: dict | None) -> dict:
    """Which side writers a run wants: `train.tensorboard`, `train.wandb.*`, overridable by
    the environment (HANDX_TENSORBOARD=0, HANDX_WANDB_PROJECT=name)."""
    train = (config or {}).get("train", {}) or {}
    wandb_cfg = {**LOGGING_DEFAULTS["wandb"], **(train.get("wandb") or {})}
    if os.environ.get(WANDB_PROJECT_ENV):
        wandb_cfg["project"] = os.environ[WANDB_PROJECT_ENV]
    tensorboard = bool(train.get("tensorboard", True)) and os.environ.get(TENSORBOARD_ENV, "1") != "0"
    return {"tensorboard": tensorboard, "wandb": wandb_cfg}


class SideWriters:
    """Sinks fed from a queue by one background thread. `put` never blocks; a sink that
    fails (to start or to write) is reported once on stderr and dropped."""

    def __init__(self, factories: list[tuple[str, Callable[[], Any]]]):
        self._queue: queue.Queue = queue.Queue()
        self._factories = factories
        self.failures: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name="handx-metrics-writers", daemon=True)
        self._thread.start()

    def put(self, record: dict) -> None:
        self._queue.put(dict(record))

    def close(self, timeout: float = 120.0) -> None:
        """Flush what is queued and close the sinks (waits at most `timeout` seconds)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _fail(self, name: str, err: BaseException) -> None:
        self.failures[name] = f"{type(err).__name__}: {err}"
        print(f"warning: {name} logging failed ({self.failures[name]}); it is off for the rest of this run, "
              "training goes on and metrics.jsonl is unaffected", file=sys.stderr, flush=True)

    def _run(self) -> None:
        sinks = []
        for name, factory in self._factories:
            try:
                sinks.append(factory())
            except Exception as err:  # noqa: BLE001 - any writer problem must not stop training
                self._fail(name, err)
        while True:
            record = self._queue.get()
            if record is None:
                break
            for sink in list(sinks):
                try:
                    sink.write(record)
                except Exception as err:  # noqa: BLE001
                    self._fail(sink.name, err)
                    sinks.remove(sink)
        for sink in sinks:
            try:
                sink.close()
            except Exception as err:  # noqa: BLE001
                self._fail(sink.name, err)


def read_config_json(workdir: str) -> dict | None:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def make_side_writers(workdir: str, *, purge_step: int | None = None, config: dict | None = None,
                      log_config: bool = True) -> SideWriters | None:
    """The side writers a run asks for (its `config.json` when `config` is None); None if none."""
    config = read_config_json(workdir) if config is None else config
    settings = logging_settings(config)
    factories = []
    if settings["tensorboard"]:
        factories.append((TensorBoardSink.name, lambda: TensorBoardSink(
            workdir, purge_step=purge_step, config=config if log_config else None)))
    if settings["wandb"]["project"]:
        factories.append((WandbSink.name, lambda: WandbSink(workdir, settings["wandb"], config)))
    return SideWriters(factories) if factories else None


def log_side_record(workdir: str, record: dict) -> None:
    """Mirror one line appended to metrics.jsonl outside training (evaluation) into the
    run's TensorBoard and W&B; failures are reported, never raised."""
    try:
        writers = make_side_writers(workdir, log_config=False)
    except Exception as err:  # noqa: BLE001
        print(f"warning: metrics side writers unavailable ({err})", file=sys.stderr)
        return
    if writers is not None:
        writers.put(_clean_record(record))
        writers.close()


def _clean_record(record: dict) -> dict:
    return {k: _clean(v) for k, v in record.items()}
