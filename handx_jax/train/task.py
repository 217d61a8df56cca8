"""The Task protocol: how a model family plugs into the generic trainer (CONTRACTS.md).

A task owns its model, loss, inputs and FLOP count; the trainer owns everything else
(mesh, optimizer, checkpoints, logs). The config names the task by import path,
e.g. `config.task = "handx_jax.diffusion.task:DiffusionTask"`.
"""

from __future__ import annotations

import importlib
from typing import Any

import flax.linen as nn


class Task:
    """Base class documenting the protocol; subclasses override every method."""

    def __init__(self, config: Any):
        self.config = config

    def make_model(self) -> nn.Module:
        """The Linen module (parameters boxed with logical axis names)."""
        raise NotImplementedError

    def init_params(self, rng, batch) -> Any:
        """Initial parameters as a pytree of nn.Partitioned boxes (logical names)."""
        raise NotImplementedError

    def loss(self, params, batch, rng) -> tuple[Any, dict]:
        """Pure scalar loss and a dict of named scalar terms; traced inside jit."""
        raise NotImplementedError

    def train_inputs(self, *, batch_size: int, seed: int, shard_index: int, shard_count: int):
        """A grain IterDataset of numeric numpy dict batches (per-process batch size);
        `iter()` of it must be checkpointable (get_state / set_state)."""
        raise NotImplementedError

    def flops_per_example(self) -> float:
        """Analytic training FLOPs (forward + backward) for one example."""
        raise NotImplementedError


def resolve(path: str, what: str = "config.task") -> type:
    """Import `package.module:ClassName` and return the class; errors name `what` and `path`."""
    module_name, sep, attr = str(path).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} must look like 'package.module:ClassName', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"{what} {path!r}: cannot import {module_name!r} ({err})") from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"{what} {path!r}: module {module_name!r} has no {attr!r}") from None


def load_task(config: Any) -> Task:
    """Instantiate the task named by `config.task` with the whole config."""
    if not config.get("task"):
        raise ValueError("config has no 'task' field naming the task class (module:Class)")
    task = resolve(config.task)(config)
    missing = [m for m in ("make_model", "init_params", "loss", "train_inputs", "flops_per_example")
               if not callable(getattr(task, m, None))]
    if missing:
        raise TypeError(f"task {config.task} lacks the Task methods {missing}")
    return task
