"""Held-out loss: a task's deterministic evaluation loss on fixed test batches.

A task that defines `eval_inputs(batch_size=, shard_index=, shard_count=)` (a finite grain
dataset of the test split) and a pure `eval_loss(params, batch) -> (loss, terms)` is scored
on the EMA parameters every `train.eval_every` steps and after the last step (0: only
after the last; -1: never), over at most `train.eval_batches` batches. The trainer logs
`eval/loss` and `eval/<term>` with `samples_seen` and `flops_seen`, the line a scaling fit
reads.
"""

from __future__ import annotations

import itertools
import sys

import jax
import numpy as np


class HeldOutLoss:
    """Fixed test batches on the trainer's mesh and the jitted evaluation loss."""

    def __init__(self, trainer, config):
        tc = config.train
        self.every = int(tc.get("eval_every", 0))
        task = trainer.task
        self.batches = []
        if self.every < 0 or not (hasattr(task, "eval_loss") and hasattr(task, "eval_inputs")):
            return
        try:
            dataset = task.eval_inputs(batch_size=trainer.batch_size // trainer.process_count,
                                       shard_index=trainer.process_index, shard_count=trainer.process_count)
            limit = int(tc.get("eval_batches", 8))
            self.batches = [trainer.to_global(b) for b in itertools.islice(iter(dataset), max(limit, 0))]
        except ValueError as err:  # e.g. a test split smaller than one batch
            self.batches = []
            print(f"held-out loss off: {err}", file=sys.stderr)
            return
        if not self.batches:
            print(f"held-out loss off: no test batch of {trainer.batch_size}", file=sys.stderr)
            return
        batch_shardings = jax.tree_util.tree_map(lambda _: trainer.batch_sharding, self.batches[0])
        with trainer.context():
            self.fn = jax.jit(task.eval_loss, in_shardings=(trainer.state_shardings.ema_params, batch_shardings),
                              out_shardings=trainer.replicated)
        self.context = trainer.context

    def due(self, step: int, total: int) -> bool:
        if not self.batches:
            return False
        return step == total or (self.every > 0 and step % self.every == 0)

    def __call__(self, params) -> dict:
        """{'eval/loss': mean over the batches, 'eval/<term>': ...} as Python floats."""
        sums: dict[str, float] = {}
        with self.context():
            for batch in self.batches:
                loss, terms = self.fn(params, batch)
                values = jax.device_get({"loss": loss, **terms})
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + float(np.asarray(value))
        return {f"eval/{name}": value / len(self.batches) for name, value in sums.items()}
