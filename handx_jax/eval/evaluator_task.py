"""`EvaluatorTask`: the contrastive text-motion evaluator plugged into the generic trainer.

Implements the Task protocol of docs/CONTRACTS.md for `configs/evaluator.py`: inputs are
normalised `joint_pos` features (126-D) with the clip's captions tokenised by the
dataset's SentencePiece model; the loss is symmetric InfoNCE (models/evaluator.py).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from handx_jax.data import store
from handx_jax.models import evaluator as evaluator_model
from handx_jax.text import tokenizer as tokenizer_lib

TEXT_KEYS = tuple(f"tokens_{r}{s}" for r in tokenizer_lib.ROLES for s in ("", "_mask"))


def text_inputs(batch) -> dict:
    """The token fields of a batch as JAX arrays."""
    missing = [k for k in TEXT_KEYS if k not in batch]
    if missing:
        raise KeyError(f"evaluator batch lacks text fields {missing} (has {sorted(batch)})")
    return {k: jnp.asarray(batch[k]) for k in TEXT_KEYS}


class EvaluatorTask:
    """Task protocol implementation for `configs/evaluator.py`."""

    def __init__(self, config):
        self.config = config
        if str(config.data.representation) != "joint_pos":
            raise ValueError(f"the evaluator reads joint_pos features, config.data.representation is {config.data.representation!r}")
        self.model = evaluator_model.model_from_config(config)
        self.temperature = float(config.model.temperature)

    def make_model(self):
        return self.model

    def dummy_batch(self, batch_size: int = 2) -> dict:
        c = self.config
        t, length = int(c.data.seq_len), int(c.model.text_max_len)
        batch = {"motion": np.zeros((batch_size, t, int(c.model.feature_dim)), np.float32),
                 "mask": np.ones((batch_size, t), np.float32)}
        for role in tokenizer_lib.ROLES:
            batch[f"tokens_{role}"] = np.zeros((batch_size, length), np.int32)
            batch[f"tokens_{role}_mask"] = np.zeros((batch_size, length), np.float32)
        return batch

    def init_params(self, rng, batch=None):
        """Parameters boxed with logical axis names."""
        batch = self.dummy_batch() if batch is None else batch
        variables = self.model.init({"params": rng, "dropout": rng}, text_inputs(batch),
                                    jnp.asarray(batch["motion"]), jnp.asarray(batch["mask"]))
        return variables["params"]

    def loss(self, params, batch, rng):
        """(InfoNCE loss, {loss_t2m, loss_m2t, batch_r1}); pure."""
        deterministic = float(self.config.model.dropout) == 0.0
        text, motion = self.model.apply(
            {"params": params}, text_inputs(batch), batch["motion"].astype(jnp.float32),
            batch["mask"].astype(jnp.float32), deterministic=deterministic,
            rngs=None if deterministic else {"dropout": rng})
        return evaluator_model.info_nce(text, motion, self.temperature)

    def data_dir(self) -> str:
        return store.config_data_dir(self.config)

    def text_transform(self):
        c = self.config
        return tokenizer_lib.tokenize_transform(self.data_dir(), int(c.model.vocab_size), int(c.model.text_max_len))

    def train_inputs(self, *, batch_size, seed, shard_index=None, shard_count=None, split="train", **kwargs):
        """grain IterDataset of numeric batches: motion (joint_pos, normalised), mask, tokens."""
        from handx_jax.data import pipeline

        c = self.config
        return pipeline.make_dataset(
            self.data_dir(), split, batch_size=batch_size, seq_len=int(c.data.seq_len),
            representation="joint_pos", normalize=True, shuffle=True, seed=seed,
            data_ratio=float(c.data.ratio), extra_transforms=(self.text_transform(),),
            shard_index=shard_index, shard_count=shard_count,
            worker_count=int(c.data.get("worker_count", 0)), **kwargs)

    def flops_per_example(self) -> float:
        return 3.0 * evaluator_model.forward_flops(self.config)

