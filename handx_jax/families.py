"""The one registry of model families: how training, sampling, evaluation and sweeps find a
family's code.

A family is a `Family` record: its Task ("module:Class", what `handx train` builds), its
run sampler ("module:Class"), its config file and the sampling options its sampler takes.
Both classes are imported only when used, so a family whose package is missing fails
then, with an error naming the family and the import path.

Sampler protocol: `Sampler(workdir, step=None)` restores the run once; calling it as
`sampler(texts, *, num_per_text=1, seed=0, batch_size=64, progress=False, **options)`
returns float32 joints (len(texts) * num_per_text, T, 2, 21, 3) in metres, where
`texts = [(left, right, relation), ...]` and sample k of text i is row i * num_per_text + k.

Adding a family: its package (Task, sampler), `configs/<name>.py`, and one `register(...)`
line below (or in your own module, before use).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

GenerateFn = Callable[[Sequence[tuple], int, int], Any]  # (texts, num_per_text, seed) -> motion


class UnknownFamily(ValueError):
    """A run or config names no registered family."""


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    task: str  # "module:Class" of its Task (the value of config.task)
    sampler: str  # "module:Class" of its run sampler
    config: str  # its config file, e.g. "configs/diffusion.py"
    options: tuple[str, ...] = ()  # sampler keyword options beyond the protocol's own

    def task_class(self) -> type:
        return _resolve(self.task, f"family {self.name!r} task")

    def sampler_class(self) -> type:
        return _resolve(self.sampler, f"family {self.name!r} sampler")

    def load_sampler(self, workdir: str, step: int | None = None):
        return self.sampler_class()(workdir, step=step)

    def check_options(self, options: Mapping[str, Any]) -> dict:
        """The options as a dict; ValueError naming any this family's sampler does not take."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"family {self.name!r} takes no sampling option(s) {unknown}; it takes: "
                             f"{', '.join(self.options) or 'none'}")
        return dict(options)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family in the registry."""
    FAMILIES[family.name] = family
    return family


register(Family("diffusion", "handx_jax.diffusion.task:DiffusionTask", "handx_jax.diffusion.sampling:WorkdirSampler",
                "configs/diffusion.py", options=("steps", "guidance", "method")))
register(Family("autoregressive", "handx_jax.autoregressive.lm_task:PrefixLMTask",
                "handx_jax.autoregressive.sampling:WorkdirSampler", "configs/autoregressive.py",
                options=("temperature", "top_k", "top_p", "guidance", "max_tokens")))


def _resolve(path: str, what: str) -> type:
    from handx_jax.train.task import resolve

    return resolve(path, what)


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise UnknownFamily(f"unknown model family {name!r}; registered: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_of(config) -> Family:
    """The family of a run's config (ConfigDict or dict): `config.family` when registered, else
    the family whose Task is `config.task`."""
    name = config.get("family")
    if name in FAMILIES:
        return FAMILIES[name]
    task = str(config.get("task") or "")
    for family in FAMILIES.values():
        if task and (task == family.task or task == family.task.partition(":")[0]):
            return family
    raise UnknownFamily(f"config with family {name!r} and task {task!r} belongs to no registered model family "
                        f"({', '.join(sorted(FAMILIES))}); register it in handx_jax/families.py")


def run_family(workdir: str) -> Family:
    """The family of the run in `workdir` (from its config.json)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {workdir} is not a run directory")
    with open(path) as f:
        config = json.load(f)
    try:
        return family_of(config)
    except UnknownFamily as err:
        raise UnknownFamily(f"{workdir}: {err}") from None


def load_sampler(workdir: str, step: int | None = None):
    """The sampler of the run in `workdir`, restored at checkpoint `step` (default newest)."""
    return run_family(workdir).load_sampler(workdir, step=step)


def generator(workdir: str, *, step: int | None = None, batch_size: int = 64, progress: bool = False,
              **options) -> GenerateFn:
    """`generate(texts, num_per_text, seed) -> motion` backed by the run in `workdir`; the run
    is restored on the first call and reused. `options` go to its family's sampler (checked
    here, before anything is restored)."""
    family = run_family(workdir)
    options = family.check_options(options)
    loaded: list = []

    def generate(texts, num_per_text, seed):
        if not loaded:
            loaded.append(family.load_sampler(workdir, step=step))
        return loaded[0](list(texts), num_per_text=num_per_text, seed=seed, batch_size=batch_size,
                         progress=progress, **options)

    return generate


def config_path(name: str) -> str:
    """The config file of a family (relative to the repository), e.g. configs/diffusion.py."""
    return get(name).config


def parse_options(items: Sequence[str]) -> dict:
    """`["temperature=0.8", "top_k=20"]` -> {'temperature': 0.8, 'top_k': 20} (Python literals)."""
    from handx_jax import configlib

    out = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--option {item!r} must look like name=value")
        out[key.strip()] = configlib._literal(value.strip())
    return out
