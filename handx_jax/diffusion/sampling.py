"""Text-to-motion sampling: from (task, params) or straight from a run directory.

`sample(task, params, text_batch, ...)` returns normalised features; the whole reverse
process is one jitted `lax.scan` with the conditional and null-condition passes in one
batch. `sample_from_workdir` restores the (EMA) parameters, tokenises the prompts with
the dataset's tokenizer, samples in batches, undoes the normalisation and converts the
features to joints (N, T, 2, 21, 3), centred on the clip's mean wrist midpoint.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from handx_jax import jax_setup
from handx_jax.diffusion import samplers, schedule as schedule_lib
from handx_jax.models.diffusion import MotionDenoiser
from handx_jax.text import tokenizer as tokenizer_lib


@functools.lru_cache(maxsize=16)
def _jitted_sampler(model: MotionDenoiser, num_steps: int, kind: str, steps: int, guidance: float, method: str, eta: float,
                    compiler_options: tuple = ()):
    schedule = schedule_lib.respace(schedule_lib.make_schedule(num_steps, kind), steps)

    def run(params, text, mask_bt, rng, constraint):
        variables = {"params": params}
        cond = model.apply(variables, text, method=MotionDenoiser.encode_condition)
        denoise = lambda x, t, m, c: model.apply(variables, x, t, m, c, method=MotionDenoiser.denoise)
        return samplers.sample(
            denoise, schedule, mask_bt, cond, rng, feature_dim=model.feature_dim,
            guidance=guidance, method=method, eta=eta, constraint=constraint,
        )

    return jax.jit(run, compiler_options=dict(compiler_options) or None)


def sample(task, params, text_batch: dict, *, num_per_text: int = 1, steps: int = 50, guidance: float = 2.5,
           seed: int = 0, method: str = "ddim", eta: float = 0.0, seq_len: int | None = None,
           constraint=None, rng=None) -> jax.Array:
    """Normalised features (N * num_per_text, T, F) for a batch of text inputs.

    `task` is a `DiffusionTask` (or anything with `.config` and `.make_model()`);
    `text_batch` holds `tokens_<role>` (+ `_mask`) arrays or `text_embedding`, N rows.
    Sample j of text i is row i * num_per_text + j. `constraint` = (values, weight) in
    normalised feature space, shaped like the output (see `masks.py`).
    """
    config = task.config
    model = task.make_model()
    length = int(seq_len or config.data.seq_len)
    text = {k: jnp.repeat(jnp.asarray(v), num_per_text, axis=0) for k, v in text_batch.items()}
    n = next(iter(text.values())).shape[0]
    mask = jnp.ones((n, length), jnp.float32)
    run = _jitted_sampler(model, int(config.diffusion.num_steps), str(config.diffusion.schedule),
                          int(steps), float(guidance), str(method), float(eta),
                          tuple(sorted((jax_setup.inference_compiler_options() or {}).items())))
    rng = jax.random.key(seed) if rng is None else rng
    return run(params, text, mask, rng, constraint)


def load_stats(config):
    """Normalisation statistics of the run's dataset."""
    from handx_jax.data import normalization

    return normalization.load_or_compute_stats(str(config.data.dir), str(config.data.representation), progress=False)


def features_to_joints(features_ntf, stats, representation: str) -> np.ndarray:
    """Undo the normalisation and convert features to joints (N, T, 2, 21, 3)."""
    from handx_jax.data import representations

    feats = np.asarray(features_ntf, np.float32) * stats.std + stats.mean
    return np.asarray(representations.to_joints(feats, representation), np.float32)


def text_batch_for(task, texts: Sequence[Sequence[str]], embedder=None) -> dict:
    """Numeric text inputs for `[(left, right, relation), ...]`: the run's caption embeddings
    (a tower run embeds prompts its file lacks with its tower; `embedder` reuses a
    `text_tower.CaptionEmbedder`), or its tokenizer's ids."""
    from handx_jax.models.diffusion import text_source
    from handx_jax.train import text_tower

    config = task.config
    for i, triple in enumerate(texts):
        if len(triple) != 3:
            raise ValueError(f"text {i} must be (left, right, relation), got {len(triple)} strings")
    if text_tower.uses_tower(config):
        embedder = embedder or text_tower.CaptionEmbedder(config)
        return {"text_embedding": embedder(texts)}
    if text_source(config) == "embeddings":
        table = tokenizer_lib.load_text_embeddings(str(config.model.text_embeddings_path))
        return {"text_embedding": np.stack([table.lookup(t) for t in texts])}
    processor = tokenizer_lib.load_tokenizer(str(config.data.dir))
    return tokenizer_lib.encode_triples(processor, texts, int(config.model.text_max_len))


class WorkdirSampler:
    """A diffusion run's (EMA) parameters, task and statistics, restored once and reused by
    every call (an evaluation samples each replication with the same weights)."""

    def __init__(self, workdir: str, *, step: int | None = None, ema: bool = True):
        from handx_jax.diffusion.task import DiffusionTask
        from handx_jax.train.checkpoint import restore_params

        self.workdir = workdir
        self.config, self.params, self.step = restore_params(workdir, step=step, ema=ema)
        if not self.config.data.get("dir"):
            self.config.data.dir = os.path.join(workdir, "data")
        self.task = DiffusionTask(self.config)
        from handx_jax.train import artifacts  # the run's own statistics; its tokenizer checked

        artifacts.check_sources(workdir)
        stats = artifacts.run_stats(workdir, self.config)
        self.stats = stats if stats is not None else load_stats(self.config)
        self._embedder = None  # the run's caption embeddings (tower runs), read on first use

    def text_batch(self, texts: Sequence[Sequence[str]]) -> dict:
        from handx_jax.train import text_tower

        if self._embedder is None and text_tower.uses_tower(self.config):
            self._embedder = text_tower.CaptionEmbedder(self.config)
        return text_batch_for(self.task, texts, self._embedder)

    def __call__(self, texts: Sequence[Sequence[str]], *, num_per_text: int = 1, steps: int = 50,
                 guidance: float = 2.5, seed: int = 0, method: str = "ddim", batch_size: int = 64,
                 progress: bool = False, constraint=None) -> np.ndarray:
        """Motion (N * num_per_text, T, 2, 21, 3) in metres for `texts` = [(left, right, relation), ...].

        `constraint`: optional (values, weight), each (N * num_per_text, T, F) in normalised
        feature space (`conditioning.reference_constraint` builds them from a clip).
        """
        if not texts:
            raise ValueError(f"sampling {self.workdir}: no texts given")
        text = self.text_batch(texts)
        total = len(texts) * num_per_text
        # Expand prompts up front, then sample in fixed-size chunks (one compiled shape).
        rows = {k: np.repeat(v, num_per_text, axis=0) for k, v in text.items()}
        if constraint is not None:
            values, weight = (np.asarray(a, np.float32) for a in constraint)
            if values.shape != weight.shape or values.shape[0] != total:
                raise ValueError(f"constraint arrays {values.shape} / {weight.shape} must both be ({total}, T, F)")
            rows.update(_constraint_values=values, _constraint_weight=weight)
        chunk = max(1, min(int(batch_size), total))
        out = []
        key = jax.random.key(seed)
        for start in tqdm(range(0, total, chunk), disable=not progress, desc="sampling"):
            part = {k: v[start:start + chunk] for k, v in rows.items()}
            real = next(iter(part.values())).shape[0]
            if real < chunk:  # pad the last chunk to the compiled batch size
                part = {k: np.concatenate([v, np.repeat(v[-1:], chunk - real, axis=0)]) for k, v in part.items()}
            part_constraint = None
            if constraint is not None:
                part_constraint = (part.pop("_constraint_values"), part.pop("_constraint_weight"))
            key, sub = jax.random.split(key)
            feats = sample(self.task, self.params, part, steps=steps, guidance=guidance, method=method, rng=sub,
                           constraint=part_constraint)
            out.append(np.asarray(feats)[:real])
        return features_to_joints(np.concatenate(out), self.stats, str(self.config.data.representation))

    def conditioned(self, texts: Sequence[Sequence[str]], reference, mode: str, *, keyframes=None,
                    num_per_text: int = 1, **kw) -> np.ndarray:
        """Like calling the sampler, with every sample tied to `reference` (T, 2, 21, 3) in metres
        by `mode` (`conditioning.MODES`); samples come back in the reference's coordinates
        (the features are centred on its mean wrist midpoint, which is added back)."""
        from handx_jax.data import representations
        from handx_jax.diffusion import conditioning

        seq_len = int(self.config.data.seq_len)
        if np.shape(reference)[0] != seq_len:
            raise ValueError(f"reference has {np.shape(reference)[0]} frames; the model's window is {seq_len}")
        constraint = conditioning.reference_constraint(reference, mode, str(self.config.data.representation),
                                                       self.stats, len(texts) * num_per_text, keyframes)
        offset = np.asarray(representations.centre_offset(np.asarray(reference, np.float32)[None]))[0]
        return self(texts, num_per_text=num_per_text, constraint=constraint, **kw) + offset

    def long_horizon(self, stages: Sequence[Sequence[str]], *, num: int = 1, context: int = 10, steps: int = 50,
                     guidance: float = 2.5, seed: int = 0, method: str = "ddim") -> np.ndarray:
        """Motion (num, T + (K - 1)(T - context), 2, 21, 3): one (left, right, relation) per
        stage, each stage continuing from the previous one's last `context` frames."""
        from handx_jax.diffusion import long_horizon

        if not stages:
            raise ValueError(f"sampling {self.workdir}: no stages given")
        batch = self.text_batch(list(stages))  # one tokenizer pass, then one row per stage
        texts = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(len(stages))]
        feats = long_horizon.sample_stages(self.task, self.params, texts, num=num, context=context, steps=steps,
                                           guidance=guidance, method=method, seed=seed)
        return features_to_joints(feats, self.stats, str(self.config.data.representation))


def sample_from_workdir(workdir: str, texts: Sequence[Sequence[str]], *, num_per_text: int = 1, steps: int = 50,
                        guidance: float = 2.5, seed: int = 0, method: str = "ddim", batch_size: int = 64,
                        step: int | None = None, ema: bool = True, progress: bool = False) -> np.ndarray:
    """Motion (N * num_per_text, T, 2, 21, 3) in metres for `texts` = [(left, right, relation), ...]."""
    if not texts:
        raise ValueError("sample_from_workdir: no texts given")
    return WorkdirSampler(workdir, step=step, ema=ema)(
        list(texts), num_per_text=num_per_text, steps=steps, guidance=guidance, seed=seed, method=method,
        batch_size=batch_size, progress=progress)
