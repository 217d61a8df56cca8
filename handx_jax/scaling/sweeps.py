"""Sweep specs -> scale points -> concrete train/evaluate command lines.

A sweep file (`configs/sweeps/<name>.py`) has `get_config(arg)` returning a ConfigDict:

    name               sweep name
    runlocal           bool: add `runlocal` to every family config (CPU smoke sizes)
    points             list of dicts, one per scale point:
                         family ('diffusion', ...), size (a size of configs/<family>.py),
                         data (ratio, 0 < data <= 1), seed,
                         steps  OR  compute_budget (training FLOPs; steps are derived
                         from the task's analytic FLOPs per example and the batch size),
                         label (optional; names the point and its `size` in the logs),
                         overrides (optional list of 'a.b=v' config overrides)
    common_overrides   list of 'a.b=v' overrides for every point
    data               dict(dir=None or a dataset dir, num_synthetic_clips, num_test_clips):
                         dir None -> one synthetic dataset for the whole sweep
    evaluator          dict(config='configs/evaluator.py:...', overrides=[...]): trained once
    text_tower         dict(config='configs/text_tower.py:...', overrides=[...], workdir=None):
                         the frozen text tower every point with `model.text = "tower"` is
                         conditioned on, trained once (default: size XS, or T,runlocal for
                         a runlocal sweep)
    evaluate           dict(args=[...]): extra `handx evaluate` arguments
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from handx_jax import configlib
from handx_jax.scaling.runs import SYNTHETIC_DATA_DIRNAME

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class ScalePoint:
    """One run of a sweep: a model family at a size, a data ratio, a length and a seed."""

    family: str
    size: str
    data: float
    seed: int = 0
    steps: int | None = None
    compute_budget: float | None = None
    label: str | None = None
    overrides: tuple[str, ...] = ()
    quality: str = "high"
    codebook: int | None = None  # autoregressive points: the FSQ tokenizer's nominal codebook

    def __post_init__(self):
        from handx_jax.data.synthetic.generator import QUALITY

        if self.quality not in QUALITY:
            raise ValueError(f"scale point {self.family}/{self.size}: quality={self.quality!r}; "
                             f"choose one of {', '.join(sorted(QUALITY))}")
        if not 0.0 < float(self.data) <= 1.0:
            raise ValueError(f"scale point {self.family}/{self.size}: data={self.data} must be in (0, 1]")
        if (self.steps is None) == (self.compute_budget is None):
            raise ValueError(f"scale point {self.family}/{self.size}/data={self.data}: give exactly one "
                             "of steps or compute_budget")
        if self.steps is not None and int(self.steps) <= 0:
            raise ValueError(f"scale point {self.family}/{self.size}: steps must be positive")
        if self.compute_budget is not None and float(self.compute_budget) <= 0:
            raise ValueError(f"scale point {self.family}/{self.size}: compute_budget must be positive")

    @property
    def point_id(self) -> str:
        """Directory-safe unique name, e.g. diffusion-S-d0.05-s0 or diffusion-M-d1-c1e+17-s0."""
        parts = [self.family, self.label or self.size, f"d{float(self.data):g}"]
        if self.compute_budget is not None:
            parts.append(f"c{float(self.compute_budget):.3g}")
        if self.codebook is not None:
            parts.append(f"cb{int(self.codebook)}")
        if self.quality != "high":
            parts.append(f"q{self.quality}")
        parts.append(f"s{int(self.seed)}")
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))

    def config_spec(self, runlocal: bool) -> str:
        from handx_jax import families

        arg = f"size={self.size},data={float(self.data):g}" + (",runlocal" if runlocal else "")
        if self.codebook is not None:
            arg += f",codebook={int(self.codebook)}"
        return f"{families.config_path(self.family)}:{arg}"


@dataclasses.dataclass
class Sweep:
    name: str
    points: list[ScalePoint]
    runlocal: bool = False
    common_overrides: tuple[str, ...] = ()
    data: dict = dataclasses.field(default_factory=dict)
    evaluator: dict = dataclasses.field(default_factory=dict)
    evaluate: dict = dataclasses.field(default_factory=dict)
    spec: str = ""
    text_tower: dict = dataclasses.field(default_factory=dict)
    fsq: dict = dataclasses.field(default_factory=dict)  # dict(config='configs/fsq.py:...', overrides=[...])

    def tower_spec(self) -> str:
        return str(self.text_tower.get("config") or
                   ("configs/text_tower.py:size=T,runlocal" if self.runlocal else "configs/text_tower.py:size=XS"))

    def tower_config(self):
        """The text tower's config with the sweep's overrides applied."""
        config = configlib.load_config(self.tower_spec())
        return configlib.apply_overrides(config, list(self.text_tower.get("overrides") or []))

    def __post_init__(self):
        ids = [p.point_id for p in self.points]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"sweep {self.name!r}: duplicate scale points {dupes}")
        if not self.points:
            raise ValueError(f"sweep {self.name!r} has no points")


def _plain(value):
    """ConfigDict / FrozenConfigDict / tuple -> plain dicts and lists."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


POINT_KEYS = {"family", "size", "data", "seed", "steps", "compute_budget", "label", "overrides", "quality",
              "codebook"}


def point_from_dict(entry: dict, where: str = "sweep") -> ScalePoint:
    unknown = sorted(set(entry) - POINT_KEYS)
    if unknown:
        raise ValueError(f"{where}: scale point {entry} has unknown keys {unknown}; "
                         f"allowed: {', '.join(sorted(POINT_KEYS))}")
    missing = [k for k in ("family", "size", "data") if k not in entry]
    if missing:
        raise ValueError(f"{where}: scale point {entry} lacks {missing}")
    return ScalePoint(
        family=str(entry["family"]), size=str(entry["size"]), data=float(entry["data"]),
        seed=int(entry.get("seed", 0)),
        steps=None if entry.get("steps") is None else int(entry["steps"]),
        compute_budget=None if entry.get("compute_budget") is None else float(entry["compute_budget"]),
        label=entry.get("label"), overrides=tuple(entry.get("overrides") or ()),
        quality=str(entry.get("quality", "high")),
        codebook=None if entry.get("codebook") is None else int(entry["codebook"]))


def sweep_from_config(config, spec: str = "") -> Sweep:
    c = _plain(config)
    where = spec or str(c.get("name", "sweep"))
    return Sweep(
        name=str(c.get("name") or os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]),
        points=[point_from_dict(p, where) for p in c.get("points") or []],
        runlocal=bool(c.get("runlocal", False)),
        common_overrides=tuple(c.get("common_overrides") or ()),
        data=dict(c.get("data") or {}), evaluator=dict(c.get("evaluator") or {}),
        evaluate=dict(c.get("evaluate") or {}), text_tower=dict(c.get("text_tower") or {}),
        fsq=dict(c.get("fsq") or {}), spec=spec)


def load_sweep(spec: str) -> Sweep:
    """`configs/sweeps/tiny.py[:arg]` (or a bare name such as `tiny`) -> Sweep."""
    path, colon, arg = spec.partition(":")
    if not path.endswith(".py") and os.sep not in path:
        spec = f"configs/sweeps/{path}.py{colon}{arg}"
    return sweep_from_config(configlib.load_config(spec), spec)


def point_data_dir(data_dir: str, point: ScalePoint, synthetic: bool) -> str:
    """The dataset a point trains on: the sweep's, or for a lower `quality` a synthetic
    dataset beside it (`<data_dir>_<quality>`: the same clips degraded, with the clean test split)."""
    if point.quality == "high":
        return data_dir
    if not synthetic:
        raise ValueError(f"scale point {point.point_id}: quality={point.quality} needs the sweep's synthetic "
                         "data (data.dir must be None); a real dataset has one quality")
    return f"{os.path.normpath(data_dir)}_{point.quality}"


def evaluate_args(sweep: Sweep, family: str) -> list[str]:
    """`handx evaluate` arguments of a point: `evaluate.by_family[family]` where the sweep gives
    one (sampling options differ between families), else `evaluate.args`."""
    by_family = sweep.evaluate.get("by_family") or {}
    args = by_family[family] if family in by_family else sweep.evaluate.get("args")
    return [str(a) for a in (args or [])]


def fsq_dir(out_dir: str, codebook: int) -> str:
    """The sweep's FSQ tokenizer run for one codebook (a shared stage, trained once)."""
    return os.path.join(os.path.abspath(out_dir), "fsq", f"cb{int(codebook)}")


def fsq_overrides(point: ScalePoint, out_dir: str | None) -> list[str]:
    """An autoregressive point with a codebook reads the sweep's tokenizer for it."""
    if point.codebook is None or out_dir is None:
        return []
    return [f"model.fsq_workdir={fsq_dir(out_dir, point.codebook)}"]


def point_overrides(sweep: Sweep, point: ScalePoint, data_dir: str | None) -> list[str]:
    """All `a.b=v` overrides of a point (steps excluded): common, point, seed, size label, data."""
    out = list(sweep.common_overrides) + list(point.overrides) + [f"train.seed={int(point.seed)}"]
    if point.label:
        out.append(f"size={point.label}")
    if data_dir:
        out.append(f"data.dir={data_dir}")
        if sweep.data.get("num_synthetic_clips"):
            out.append(f"data.num_synthetic_clips={int(sweep.data['num_synthetic_clips'])}")
    return out


def point_config(sweep: Sweep, point: ScalePoint, data_dir: str | None = None, tower_dir: str | None = None):
    """The family config of a point with its overrides applied (steps not yet set)."""
    config = configlib.load_config(os.path.join(REPO_ROOT, point.config_spec(sweep.runlocal)))
    return configlib.apply_overrides(config, point_overrides(sweep, point, data_dir) + tower_overrides(sweep, config, tower_dir))


def tower_overrides(sweep: Sweep, config, tower_dir: str | None) -> list[str]:
    """A point conditioned on the frozen text tower reads the sweep's: its run directory and
    embedding width."""
    if tower_dir is None or str(config.model.get("text", "")) != "tower":
        return []
    return [f"model.text_tower={tower_dir}", f"model.text_embed_dim={int(sweep.tower_config().model.text_d_model)}"]


def config_hash(config, out_dir: str, extra=None) -> str:
    """sha256 of a point's resolved config (and `extra`, e.g. its evaluation arguments), with
    the sweep directory written as `$OUT` so a moved sweep keeps its keys."""
    import hashlib
    import json

    from handx_jax.train.checkpoint import config_to_dict

    out_dir = os.path.abspath(out_dir)

    def rel(value):
        if isinstance(value, str):
            return value.replace(out_dir, "$OUT")
        if isinstance(value, dict):
            return {k: rel(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rel(v) for v in value]
        return value

    text = json.dumps(rel({"config": config_to_dict(config), "extra": extra}), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def train_flops_per_example(config) -> float:
    """The task's own analytic training FLOPs per example (the trainer logs the same count)."""
    module_name, _, class_name = str(config.task).partition(":")
    import importlib

    task_cls = getattr(importlib.import_module(module_name), class_name)
    return float(task_cls(config).flops_per_example())


def resolve_steps(sweep: Sweep, point: ScalePoint, config=None) -> int:
    """Steps of a point: given, or ceil(budget / (FLOPs per example x batch size))."""
    if point.steps is not None:
        return int(point.steps)
    config = config if config is not None else point_config(sweep, point)
    per_step = train_flops_per_example(config) * int(config.train.batch_size)
    return max(1, math.ceil(float(point.compute_budget) / per_step))
