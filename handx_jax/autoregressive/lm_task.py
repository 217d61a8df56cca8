"""`PrefixLMTask`: the autoregressive prefix-LM plugged into the generic trainer.

Inputs: the FSQ token file of the run's tokenizer (`model.fsq_workdir`; written by
`handx tokenize`, or here when missing) joined by clip name to the split's records, one of the clip's caption
triplets drawn per example (seeded, as the diffusion pipeline draws them) and turned into
the frozen text tower's precomputed embeddings. A batch holds `targets` (B, max_tokens + 1):
the clip's codes, END, then PAD, and `text_embedding` (B, 3, E). The model reads
`targets[:, :-1]` and predicts `targets`; the loss is the mean cross-entropy over non-PAD
targets. Captions are replaced by the null prefix at rate `model.cond_dropout`.
"""

from __future__ import annotations

import os

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.data import store
from handx_jax.data.handx_format import ANNOTATION_KEYS
from handx_jax.data.pipeline import _to_str
from handx_jax.models import prefix_lm

BATCH_KEYS = ("targets", "text_embedding")


def model_from_config(config) -> prefix_lm.PrefixLM:
    m = config.model
    return prefix_lm.PrefixLM(
        codebook_size=int(m.codebook_size), num_layers=int(m.num_layers), num_heads=int(m.num_heads),
        d_model=int(m.d_model), mlp_dim=int(m.mlp_dim), text_embed_dim=int(m.text_embed_dim),
        max_len=int(m.num_prefix) + int(m.max_tokens) + 1, num_prefix=int(m.num_prefix),
        rope_base=float(m.rope_base), dtype=jnp.dtype(m.dtype))


def parameter_counts(config) -> dict:
    m = config.model
    return prefix_lm.parameter_counts(codebook_size=int(m.codebook_size), num_layers=int(m.num_layers),
                                      d_model=int(m.d_model), mlp_dim=int(m.mlp_dim),
                                      text_embed_dim=int(m.text_embed_dim), num_prefix=int(m.num_prefix))


def forward_flops(config) -> float:
    m = config.model
    return prefix_lm.forward_flops(codebook_size=int(m.codebook_size), num_layers=int(m.num_layers),
                                   d_model=int(m.d_model), mlp_dim=int(m.mlp_dim),
                                   text_embed_dim=int(m.text_embed_dim), motion_inputs=int(m.max_tokens),
                                   num_prefix=int(m.num_prefix))


def token_losses(logits_blv, targets_bl, pad: int):
    """(mean cross-entropy over non-PAD targets, token accuracy over the same)."""
    valid = (targets_bl != pad).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits_blv.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets_bl[..., None], axis=-1)[..., 0]
    count = jnp.maximum(valid.sum(), 1.0)
    correct = (jnp.argmax(logits_blv, axis=-1) == targets_bl).astype(jnp.float32)
    return (nll * valid).sum() / count, (correct * valid).sum() / count


class MakeTokenExample(grain.transforms.RandomMap):
    """Record (clip_index + caption lists) -> `targets` and one caption triplet (strings)."""

    def __init__(self, codes, lengths, row_of_clip, max_tokens: int, codebook_size: int, random_crop: bool):
        self.codes, self.lengths, self.row_of_clip = codes, lengths, row_of_clip
        self.max_tokens, self.random_crop = int(max_tokens), random_crop
        self.end, self.pad = prefix_lm.end_id(codebook_size), prefix_lm.pad_id(codebook_size)

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        index = int(record["clip_index"])
        row = int(self.row_of_clip[index])
        n = int(self.lengths[row])
        pick = int(rng.integers(len(record[ANNOTATION_KEYS[0]])))
        start = 0
        if n > self.max_tokens and self.random_crop:
            start = int(rng.integers(n - self.max_tokens + 1))
        kept = min(n, self.max_tokens)
        targets = np.full((self.max_tokens + 1,), self.pad, np.int32)
        targets[:kept] = self.codes[row, start:start + kept]
        if start + kept == n:  # the clip ends here (a crop that stops early gets no END)
            targets[kept] = self.end
        return {"targets": targets, "clip_index": np.int32(index),
                "caption_left": _to_str(record["left_annotation"][pick]),
                "caption_right": _to_str(record["right_annotation"][pick]),
                "caption_relation": _to_str(record["interaction_annotation"][pick])}


class PrefixLMTask:
    """Task protocol implementation for `configs/autoregressive.py`."""

    def __init__(self, config):
        self.config = config
        self.model = model_from_config(config)
        self.pad = prefix_lm.pad_id(int(config.model.codebook_size))
        self._text_transform = None
        self._fsq_run = None

    # -- model -------------------------------------------------------------------------
    def make_model(self) -> nn.Module:
        return self.model

    def dummy_batch(self, batch_size: int = 2) -> dict:
        m = self.config.model
        return {"targets": np.full((batch_size, int(m.max_tokens) + 1), self.pad, np.int32),
                "text_embedding": np.zeros((batch_size, int(m.num_prefix), int(m.text_embed_dim)), np.float32)}

    def init_params(self, rng, batch=None):
        batch = self.dummy_batch() if batch is None else batch
        targets = jnp.asarray(batch["targets"])
        return jax.jit(lambda r, t, x: self.model.init(r, t, x[:, :-1])["params"])(
            rng, jnp.asarray(batch["text_embedding"]), targets)

    # -- losses ------------------------------------------------------------------------
    def loss(self, params, batch, rng):
        """(mean token cross-entropy, {'accuracy'}) with captions dropped at `cond_dropout`."""
        targets = batch["targets"]
        drop = jax.random.bernoulli(rng, float(self.config.model.cond_dropout), (targets.shape[0],))
        logits = self.model.apply({"params": params}, batch["text_embedding"], targets[:, :-1], drop)
        loss, accuracy = token_losses(logits, targets, self.pad)
        return loss, {"accuracy": accuracy}

    def eval_loss(self, params, batch):
        """Held-out token NLL (captions kept; deterministic) and token accuracy."""
        targets = batch["targets"]
        logits = self.model.apply({"params": params}, batch["text_embedding"], targets[:, :-1])
        loss, accuracy = token_losses(logits, targets, self.pad)
        return loss, {"accuracy": accuracy}

    def flops_per_example(self) -> float:
        """3 x the forward matmul FLOPs (attention, text projection and vocabulary head included)."""
        return 3.0 * forward_flops(self.config)

    # -- inputs ------------------------------------------------------------------------
    def data_dir(self) -> str:
        return store.config_data_dir(self.config)

    def fsq_key(self) -> str:
        """The tokenizer's key (`model.fsq_key`, read from `model.fsq_workdir` when unset),
        checked against the config's codebook and downsampling."""
        m = self.config.model
        if not m.get("fsq_key"):
            if not m.get("fsq_workdir"):
                raise ValueError("config.model.fsq_workdir is not set: train a tokenizer (configs/fsq.py) and pass "
                                 "its run directory (configs/autoregressive.py:fsq=DIR)")
            m.fsq_key = self.fsq_run().key
        return str(m.fsq_key)

    def fsq_run(self):
        """The tokenizer run of `model.fsq_workdir` (restored once), checked against the config."""
        if getattr(self, "_fsq_run", None) is None:
            from handx_jax.autoregressive.fsq_run import FsqRun

            run = FsqRun(fsq_run_dir(self.config))
            check_fsq_run(self.config, run)
            self._fsq_run = run
        return self._fsq_run

    def load_tokens(self, split: str):
        """The split's token file; made with the run's tokenizer first when it is missing
        (every split of the dataset, resumable), as the text tower stage makes embeddings."""
        import sys

        from handx_jax.autoregressive import tokens as tokens_lib

        data_dir, key = self.data_dir(), self.fsq_key()
        if not os.path.isfile(tokens_lib.tokens_path(data_dir, key, split)) and self.config.model.get("fsq_workdir"):
            if jax.process_count() > 1:
                raise FileNotFoundError(f"{tokens_lib.tokens_path(data_dir, key, split)} is missing: run `handx tokenize` "
                                        "before a multi-process run")
            print(f"motion tokens of {key} are missing in {data_dir}: tokenizing the dataset", file=sys.stderr)
            tokens_lib.tokenize_dataset(self.fsq_run(), data_dir, log=lambda msg: print(msg, file=sys.stderr))
        return tokens_lib.load_tokens(data_dir, key, split)

    def text_transform(self):
        """Captions -> `text_embedding` through the run's embeddings table (made once)."""
        if self._text_transform is None:
            from handx_jax.text import tokenizer as tokenizer_lib
            from handx_jax.train import text_tower

            c = self.config
            if text_tower.uses_tower(c):
                table = text_tower.prepare_run(c)
                self._text_transform = tokenizer_lib.LookupTextEmbeddings(table.path, table)
            else:
                path = str(c.model.get("text_embeddings_path", "") or "")
                if not path:
                    raise ValueError("config.model.text = 'file' needs config.model.text_embeddings_path")
                self._text_transform = tokenizer_lib.LookupTextEmbeddings(path)
        return self._text_transform

    def _dataset(self, split, *, batch_size, seed, shuffle, num_epochs, shard_index, shard_count,
                 drop_remainder=True):
        from handx_jax.autoregressive.tokens import tokens_path
        from handx_jax.data import pipeline, subsets, tfds_builder

        c = self.config
        data_dir = self.data_dir()
        if shard_index is None or shard_count is None:
            shard_index, shard_count = pipeline.default_shard()
        key = self.fsq_key()
        tokens = self.load_tokens(split)
        version_dir = tfds_builder.ensure_built(data_dir)
        source = tfds_builder.data_source(version_dir, split)
        names = pipeline.FeatureCache.ensure(version_dir, split, str(c.data.representation)).names
        row_of_clip = token_rows(names, tokens.names, tokens_path(data_dir, key, split))
        indices = subsets.subset_indices(names, float(c.data.ratio) if split == "train" else 1.0, seed)
        indices = indices[shard_index::shard_count]
        if drop_remainder and num_epochs is not None and len(indices) * num_epochs < batch_size:
            raise ValueError(f"{data_dir}: split {split!r} has {len(indices)} clips for shard {shard_index}/"
                             f"{shard_count}, less than one batch of {batch_size}")
        ds = grain.MapDataset.source(pipeline.EpochSource(pipeline.CaptionRecordSource(source), indices,
                                                          shuffle=shuffle, seed=seed, num_epochs=num_epochs))
        ds = ds.random_map(MakeTokenExample(tokens.codes, tokens.lengths, row_of_clip, int(c.model.max_tokens),
                                            int(c.model.codebook_size), random_crop=shuffle), seed=seed)
        ds = ds.map(self.text_transform())
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=pipeline.stack_examples)
        iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=max(64, 2 * batch_size)))
        workers = int(c.data.get("worker_count", 0))
        if workers > 0:
            iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
        return iter_ds

    def train_inputs(self, *, batch_size, seed, shard_index=None, shard_count=None, split="train"):
        """Endless shuffled batches of `targets`, `clip_index`, `text_embedding` (checkpointable)."""
        return self._dataset(split, batch_size=batch_size, seed=seed, shuffle=True, num_epochs=None,
                             shard_index=shard_index, shard_count=shard_count)

    def eval_inputs(self, *, batch_size, shard_index=None, shard_count=None):
        """The whole test split in order, one pass, the first caption draw of seed 0."""
        return self._dataset("test", batch_size=batch_size, seed=0, shuffle=False, num_epochs=1,
                             shard_index=shard_index, shard_count=shard_count)


def token_rows(clip_names, token_names, path: str) -> np.ndarray:
    """Row of each clip (in record order) in the token file; a clip without tokens is an error."""
    where = {str(n): i for i, n in enumerate(token_names)}
    missing = [str(n) for n in clip_names if str(n) not in where]
    if missing:
        raise ValueError(f"{path}: no tokens for clip {missing[0]!r} ({len(missing)} of {len(clip_names)} clips "
                         "missing): rerun `handx tokenize` for this dataset")
    return np.asarray([where[str(n)] for n in clip_names], np.int64)


def check_fsq_run(config, run) -> None:
    """The config's codebook, tokens per clip and representation must be the tokenizer's."""
    m = config.model
    if run.codebook_size != int(m.codebook_size):
        raise ValueError(f"FSQ run {run.workdir} has {run.codebook_size} codes but config.model.codebook_size is "
                         f"{m.codebook_size} (set codebook= to its nominal size)")
    if run.downsample != int(m.downsample):
        raise ValueError(f"FSQ run {run.workdir} downsamples x{run.downsample}, config.model.downsample is "
                         f"{m.downsample}")
    if int(config.data.seq_len) // run.downsample > int(m.max_tokens):
        raise ValueError(f"config.model.max_tokens={m.max_tokens} is less than data.seq_len // downsample = "
                         f"{int(config.data.seq_len) // run.downsample}")
    if run.representation != str(config.data.representation):
        raise ValueError(f"FSQ run {run.workdir} reads {run.representation}, config.data.representation is "
                         f"{config.data.representation}")


def fsq_run_dir(config) -> str:
    path = str(config.model.get("fsq_workdir", "") or "")
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"config.model.fsq_workdir {path!r} is not a directory (the FSQ tokenizer run)")
    return path
