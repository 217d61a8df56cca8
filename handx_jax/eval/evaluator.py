"""A frozen evaluator ready to embed texts and motions: `load_evaluator(workdir)`.

An evaluator run directory is a normal trainer run of `configs/evaluator.py`. Embedding
also needs the SentencePiece model and the `joint_pos` normalisation statistics of the
dataset it was trained on; `handx evaluator train` copies both into the run directory
(`spm.model`, `stats_joint_pos.npz`) so the evaluator keeps working if the dataset moves.
Otherwise they are read from the run's `config.data.dir`.
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.models import evaluator as evaluator_model

ASSET_FILES = ("spm.model", "stats_joint_pos.npz")
REPRESENTATION = "joint_pos"


class Evaluator:
    """Frozen text and motion encoders; both return (N, latent_dim) float32 numpy arrays."""

    def __init__(self, config, params, tokenizer, stats, step: int = 0, batch_size: int = 128, source: str = "?"):
        self.config, self.params, self.tokenizer, self.stats = config, params, tokenizer, stats
        self.step, self.batch_size, self.source = int(step), int(batch_size), source
        self.model = evaluator_model.model_from_config(config)
        self.seq_len = int(config.data.seq_len)
        self.text_max_len = int(config.model.text_max_len)
        self.latent_dim = int(config.model.latent_dim)
        self._text_fn = jax.jit(lambda p, t: self.model.apply({"params": p}, t, method="encode_text"))
        self._motion_fn = jax.jit(lambda p, x, m: self.model.apply({"params": p}, x, m, method="encode_motion"))

    def _chunks(self, n: int):
        for start in range(0, n, self.batch_size):
            yield start, min(start + self.batch_size, n)

    def encode_text(self, triples: Sequence[Sequence[str]]) -> np.ndarray:
        """[(left, right, relation), ...] -> latents (N, latent_dim)."""
        from handx_jax.text import tokenizer as tokenizer_lib

        triples = [tuple(t) for t in triples]
        bad = [i for i, t in enumerate(triples) if len(t) != 3]
        if bad:
            raise ValueError(f"encode_text: item {bad[0]} is not a (left, right, relation) triple: {triples[bad[0]]!r}")
        out = np.zeros((len(triples), self.latent_dim), np.float32)
        for start, stop in self._chunks(len(triples)):
            chunk = triples[start:stop]
            chunk = chunk + [chunk[-1]] * (self.batch_size - len(chunk))  # one compiled shape
            batch = tokenizer_lib.encode_triples(self.tokenizer, chunk, self.text_max_len)
            emb = self._text_fn(self.params, {k: jnp.asarray(v) for k, v in batch.items()})
            out[start:stop] = np.asarray(emb)[: stop - start]
        return out

    def motion_features(self, motion_ntjc) -> np.ndarray:
        """Normalised joint_pos features (N, T, 126) of joint positions (N, T, 2, 21, 3)."""
        from handx_jax.data import representations

        motion = np.asarray(motion_ntjc, np.float32)
        if motion.ndim != 5 or motion.shape[2:] != (2, 21, 3):
            raise ValueError(f"encode_motion: expected motion (N, T, 2, 21, 3), got {motion.shape}")
        if motion.shape[1] > self.seq_len:
            raise ValueError(f"encode_motion: {motion.shape[1]} frames exceed the evaluator's {self.seq_len}")
        if not np.all(np.isfinite(motion)):
            raise ValueError("encode_motion: motion contains NaN or infinite values")
        feats = representations.to_features(motion, REPRESENTATION)
        return ((feats - self.stats.mean) / self.stats.std).astype(np.float32)

    def encode_motion(self, motion_ntjc) -> np.ndarray:
        """Joint positions (N, T, 2, 21, 3) in metres -> latents (N, latent_dim)."""
        feats = self.motion_features(motion_ntjc)
        n, t = feats.shape[:2]
        out = np.zeros((n, self.latent_dim), np.float32)
        for start, stop in self._chunks(n):
            x = np.zeros((self.batch_size, t, feats.shape[2]), np.float32)
            x[: stop - start] = feats[start:stop]
            mask = np.ones((self.batch_size, t), np.float32)
            out[start:stop] = np.asarray(self._motion_fn(self.params, jnp.asarray(x), jnp.asarray(mask)))[: stop - start]
        return out


def _asset_path(workdir: str, config, name: str) -> str:
    candidates = [os.path.join(workdir, name)]
    data_dir = config.data.get("dir") if "data" in config else None
    if data_dir:
        candidates.append(os.path.join(str(data_dir), name))
    candidates.append(os.path.join(workdir, "data", name))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"evaluator {workdir}: no {name} in {candidates}; "
                            f"train it with `handx evaluator train` or restore the dataset directory")


def copy_assets(workdir: str, data_dir: str) -> list[str]:
    """Copy the dataset's tokenizer and joint_pos statistics into the evaluator run directory."""
    out = []
    for name in ASSET_FILES:
        src = os.path.join(data_dir, name)
        if not os.path.isfile(src):
            raise FileNotFoundError(f"{src} is missing: the evaluator was trained without it?")
        dst = os.path.join(workdir, name)
        tmp = dst + ".tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        out.append(dst)
    return out


def load_evaluator(workdir: str, step: int | None = None, batch_size: int = 128) -> Evaluator:
    """The evaluator of run directory `workdir` (EMA parameters of its newest checkpoint)."""
    from handx_jax.data import normalization
    from handx_jax.text import tokenizer as tokenizer_lib
    from handx_jax.train import checkpoint

    workdir = os.path.abspath(workdir)
    config, params, step = checkpoint.restore_params(workdir, step=step, ema=True)
    if config.get("family") != "evaluator":
        raise ValueError(f"{workdir} holds a {config.get('family', 'unknown')!r} run, not an evaluator "
                         f"(train one with `handx evaluator train`)")
    tokenizer = tokenizer_lib.load_tokenizer(_asset_path(workdir, config, "spm.model"))
    stats = normalization.load_stats(_asset_path(workdir, config, "stats_joint_pos.npz"), REPRESENTATION)
    return Evaluator(config, params, tokenizer, stats, step=step, batch_size=batch_size, source=workdir)
