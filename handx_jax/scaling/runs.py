"""Read run directories (`config.json` + `metrics.jsonl`) into numbers for fitting.

A run directory is any directory holding both files. The x axes come from the log:
`params` (last logged `params`), `flops` (last `flops_seen`), `samples` (last
`samples_seen`) and `data` (unique training clips: `config.data.ratio` times the dataset
size: the `dataset_size` argument, e.g. 84729 for the HandX release; else a logged
`dataset_size` or `train_clips` key; else `config.data.num_synthetic_clips` when the run
used synthetic data (no `data.dir`, or a sweep's `synthetic_data` directory)). A metric is the last logged `eval/<KEY>` (or `<KEY>` itself).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable

import numpy as np

X_KINDS = ("params", "flops", "data", "samples")
# A sweep's shared synthetic dataset lives in a directory of this name; for it (and for
# runs with no data.dir, which generate their own) `data.num_synthetic_clips` is the size.
SYNTHETIC_DATA_DIRNAME = "synthetic_data"


@dataclasses.dataclass
class Run:
    """One run: its directory, config and logged records (oldest first)."""

    path: str
    config: dict
    records: list[dict]
    problem: str | None = None  # why the directory cannot be used (e.g. no metrics.jsonl)

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    @property
    def size(self) -> str:
        return str(self.config.get("size", "?"))

    @property
    def family(self) -> str:
        """The run's model family (`handx_jax.families`), else its config's `family` field."""
        from handx_jax import families

        try:
            return families.family_of(self.config).name
        except families.UnknownFamily:
            return str(self.config.get("family", "?"))

    @property
    def data_ratio(self) -> float | None:
        value = (self.config.get("data") or {}).get("ratio")
        return None if value is None else float(value)

    @property
    def label(self) -> str:
        """Short label for plots: the size, plus the data ratio when it is below 1."""
        ratio = self.data_ratio
        return self.size if ratio is None or ratio >= 1.0 else f"{self.size} {ratio:g}"

    def last(self, key: str):
        """The value of `key` at the highest step that logged it (the later line among equal
        steps), or None when it was never logged: evaluating an earlier checkpoint after the
        final one does not move the run's point."""
        best, best_step = None, None
        for record in self.records:
            if key in record and record[key] is not None:
                step = record.get("step")
                step = float("-inf") if step is None else step
                if best_step is None or step >= best_step:
                    best, best_step = record[key], step
        return best

    def metric(self, key: str) -> float | None:
        for candidate in (key if key.startswith("eval/") else f"eval/{key}", key):
            value = self.last(candidate)
            if value is not None:
                return _as_float(value, self, candidate)
        return None

    def x_value(self, kind: str, dataset_size: float | None = None) -> float | None:
        if kind == "params":
            value = self.last("params")
        elif kind == "flops":
            value = self.last("flops_seen")
        elif kind == "samples":
            value = self.last("samples_seen")
        elif kind == "data":
            return self.data_size(dataset_size)
        else:
            raise ValueError(f"unknown x {kind!r}; choose one of {', '.join(X_KINDS)}")
        return None if value is None else _as_float(value, self, kind)

    def data_size(self, dataset_size: float | None = None) -> float | None:
        """Unique training clips this run saw: data ratio x dataset size."""
        total = dataset_size
        if total is None:
            total = self.last("dataset_size") or self.last("train_clips")
        data = self.config.get("data") or {}
        directory = data.get("dir")
        base = os.path.basename(os.path.normpath(str(directory or "")))
        synthetic = directory in (None, "") or base == SYNTHETIC_DATA_DIRNAME or \
            base.startswith(SYNTHETIC_DATA_DIRNAME + "_")  # a sweep's lower-quality variants
        if total is None and synthetic:
            total = data.get("num_synthetic_clips")
        if total is None:
            return None
        return float(total) * (self.data_ratio if self.data_ratio is not None else 1.0)


def _as_float(value, run: Run, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{run.path}/metrics.jsonl: {key!r} is {value!r}, not a number") from None


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and os.path.isfile(
        os.path.join(path, "metrics.jsonl"))


def _missing_log_file(path: str) -> str | None:
    """For a directory holding only one of config.json and metrics.jsonl: what it lacks."""
    has = [os.path.isfile(os.path.join(path, f)) for f in ("config.json", "metrics.jsonl")]
    if has == [True, False]:
        return "no metrics.jsonl (not started, or its log was lost)"
    if has == [False, True]:
        return "no config.json"
    return None


def load_run(path: str) -> Run:
    """Read one run directory; a cut-off last line of the log (a killed run) is skipped.
    A directory with only one of the two files gives a Run whose `problem` says so."""
    missing = _missing_log_file(path)
    if missing:
        return Run(path=path, config={}, records=[], problem=missing)
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from None
    metrics_path = os.path.join(path, "metrics.jsonl")
    with open(metrics_path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                continue  # written while the run was killed
            raise ValueError(f"{metrics_path}: line {i + 1} is not valid JSON ({err})") from None
    return Run(path=path, config=config, records=records)


def find_run_dirs(paths: Iterable[str], max_depth: int = 4) -> list[str]:
    """Run directories named directly or found below the given directories (sorted); also
    those holding only one of config.json and metrics.jsonl, so they are named, not lost."""
    found = []
    for path in paths:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"not a directory: {path}")
        if is_run_dir(path) or _missing_log_file(path):
            found.append(path)
            continue
        base_depth = path.rstrip(os.sep).count(os.sep)
        for root, dirs, _ in os.walk(path):
            dirs.sort()
            if is_run_dir(root) or _missing_log_file(root):
                found.append(root)
                dirs[:] = []
            elif root.count(os.sep) - base_depth >= max_depth:
                dirs[:] = []
    return sorted(dict.fromkeys(found))


def load_runs(paths: Iterable[str]) -> list[Run]:
    """Every run under `paths`; incomplete directories come with `problem` set."""
    return [load_run(p) for p in find_run_dirs(paths)]


@dataclasses.dataclass
class Table:
    """Arrays for a fit: one row per run that has both the x values and the metric."""

    runs: list[Run]
    x: np.ndarray
    y: np.ndarray
    extra: dict[str, np.ndarray]
    skipped: list[str]

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]


def collect(runs: list[Run], metric: str, x_kind: str, *, also: tuple[str, ...] = (),
            dataset_size: float | None = None) -> Table:
    """x, metric and any `also` x kinds per run; runs missing one, holding a non-finite
    one, or incomplete (`Run.problem`) are listed in `skipped` with the reason."""
    if x_kind not in X_KINDS:
        raise ValueError(f"unknown x {x_kind!r}; choose one of {', '.join(X_KINDS)}")
    kept, xs, ys, extras, skipped = [], [], [], {k: [] for k in also}, []
    for run in runs:
        if run.problem:
            skipped.append(f"{run.path} ({run.problem})")
            continue
        y = run.metric(metric)
        x = run.x_value(x_kind, dataset_size)
        others = {k: run.x_value(k, dataset_size) for k in also}
        values = (("metric " + metric, y), (x_kind, x), *others.items())
        missing = [name for name, v in values if v is None]
        if missing:
            skipped.append(f"{run.path} (no {', '.join(missing)})")
            continue
        bad = [f"{name} is {v}" for name, v in values if not np.isfinite(v)]
        if bad:
            skipped.append(f"{run.path} ({', '.join(bad)} in metrics.jsonl)")
            continue
        kept.append(run)
        xs.append(x)
        ys.append(y)
        for k, v in others.items():
            extras[k].append(v)
    return Table(runs=kept, x=np.array(xs, float), y=np.array(ys, float),
                 extra={k: np.array(v, float) for k, v in extras.items()}, skipped=skipped)


def write_synthetic_run(path: str, *, size: str, params: float, flops: float, samples: float,
                        metrics: dict[str, float], data_ratio: float = 1.0,
                        num_clips: int = 4096, family: str = "diffusion", seed: int = 0,
                        config_extra: dict | None = None, eval_ci95: dict | None = None) -> str:
    """A minimal run directory as the trainer and evaluator would leave it (tests, demos)."""
    os.makedirs(path, exist_ok=True)
    from handx_jax import families

    task = families.FAMILIES[family].task if family in families.FAMILIES else f"handx_jax.{family}.task"
    config = {"family": family, "size": size, "task": task,
              "data": {"ratio": data_ratio, "dir": None, "num_synthetic_clips": num_clips},
              "train": {"seed": seed}, **(config_extra or {})}
    records = [
        {"step": 1, "loss": 1.0, "params": params, "samples_seen": samples / 2, "flops_seen": flops / 2},
        {"step": 2, "loss": 0.5, "params": params, "samples_seen": samples, "flops_seen": flops},
        {"step": 2, **{f"eval/{k}": v for k, v in metrics.items()},
         **{f"eval/{k}_ci95": v for k, v in (eval_ci95 or {}).items()}},
    ]
    _write_atomic(os.path.join(path, "config.json"), json.dumps(config, indent=2))
    _write_atomic(os.path.join(path, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records))
    return path


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
