"""Text -> motion for a trained prefix-LM run: captions -> tokens -> FSQ decoder -> joints.

Length rule (one for every caller): a row's codes end at its END token (tokens after it
are cut). Its motion is the FSQ decoding of those codes, `length * downsample` frames;
a motion shorter than the run's `data.seq_len` holds its last decoded frame up to
`seq_len`, a longer one is cropped to it. The codes are decoded as one fixed-shape batch
with each row's last code repeated past its END (so the decoder's receptive field sees a
held pose, not another row's motion), then the frames past the end are replaced by the
last valid frame.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from tqdm import tqdm

from handx_jax.autoregressive import decoding


def hold_after_end(codes_bl: np.ndarray, lengths_b: np.ndarray) -> np.ndarray:
    """Codes with every position at or after a row's length replaced by its last code."""
    codes = np.asarray(codes_bl).copy()
    lengths = np.maximum(np.asarray(lengths_b), 1)
    last = codes[np.arange(len(codes)), lengths - 1]
    past = np.arange(codes.shape[1])[None, :] >= lengths[:, None]
    return np.where(past, last[:, None], codes).astype(np.int32)


def fit_frames(features_btf: np.ndarray, frames_b: np.ndarray, seq_len: int) -> np.ndarray:
    """Hold each row's last valid frame (`frames_b`) to `seq_len` frames, or crop to it."""
    x = np.asarray(features_btf)
    b, t, f = x.shape
    if t < seq_len:
        x = np.concatenate([x, np.repeat(x[:, -1:], seq_len - t, axis=1)], axis=1)
    idx = np.minimum(np.arange(seq_len)[None, :], np.maximum(np.asarray(frames_b), 1)[:, None] - 1)
    return np.take_along_axis(x, idx[:, :, None], axis=1)


class WorkdirSampler:
    """A prefix-LM run's (EMA) parameters, its FSQ tokenizer and caption embeddings, restored
    once and reused by every call."""

    def __init__(self, workdir: str, step: int | None = None, ema: bool = True):
        import flax.linen as nn

        from handx_jax.autoregressive.fsq_run import FsqRun
        from handx_jax.autoregressive.lm_task import PrefixLMTask, check_fsq_run, fsq_run_dir
        from handx_jax.train.checkpoint import restore_params

        self.workdir = workdir
        self.config, params, self.step = restore_params(workdir, step=step, ema=ema)
        if not self.config.data.get("dir"):
            self.config.data.dir = os.path.join(workdir, "data")
        self.task = PrefixLMTask(self.config)
        self.model = self.task.model
        self.params = jax.tree_util.tree_map(jax.numpy.asarray, nn.unbox(params))
        self.fsq = FsqRun(fsq_run_dir(self.config))
        check_fsq_run(self.config, self.fsq)
        trained_with = str(self.config.model.get("fsq_key", "") or "")
        if trained_with and trained_with != self.fsq.key:
            raise ValueError(f"{workdir} was trained on tokens of {trained_with}, but {self.fsq.workdir} is now "
                             f"{self.fsq.key}: its codes would mean something else")
        self.seq_len = int(self.config.data.seq_len)
        self._embedder = None

    def text_batch(self, texts: Sequence[Sequence[str]]) -> np.ndarray:
        """(N, 3, E) caption embeddings (prompts the run's file lacks go through its tower)."""
        from handx_jax.diffusion.sampling import text_batch_for
        from handx_jax.train import text_tower

        if self._embedder is None and text_tower.uses_tower(self.config):
            self._embedder = text_tower.CaptionEmbedder(self.config)
        return np.asarray(text_batch_for(self.task, texts, self._embedder)["text_embedding"], np.float32)

    def _options(self, temperature, top_k, top_p, guidance) -> dict:
        d = self.config.decoding
        pick = lambda v, name: d[name] if v is None else v
        return dict(temperature=float(pick(temperature, "temperature")), top_k=int(pick(top_k, "top_k")),
                    top_p=float(pick(top_p, "top_p")), guidance=float(pick(guidance, "guidance")))

    def tokens(self, texts: Sequence[Sequence[str]], *, num_per_text: int = 1, seed: int = 0, batch_size: int = 64,
               progress: bool = False, temperature=None, top_k=None, top_p=None, guidance=None,
               max_tokens: int | None = None, min_tokens: int = 1) -> decoding.Decoded:
        """Codes (N * num_per_text, max_tokens) (-1 from END on) and lengths; row i * num_per_text + j
        is sample j of text i."""
        if not texts:
            raise ValueError(f"sampling {self.workdir}: no texts given")
        options = self._options(temperature, top_k, top_p, guidance)
        rows = np.repeat(self.text_batch(texts), num_per_text, axis=0)
        total = len(rows)
        max_tokens = int(max_tokens or self.config.model.max_tokens)
        chunk = max(1, min(int(batch_size), total))
        key = jax.random.key(seed)
        codes, lengths = [], []
        for start in tqdm(range(0, total, chunk), disable=not progress, desc="decoding"):
            part = rows[start:start + chunk]
            real = len(part)
            if real < chunk:  # one compiled shape: pad the last chunk
                part = np.concatenate([part, np.repeat(part[-1:], chunk - real, axis=0)])
            key, sub = jax.random.split(key)
            out = decoding.decode(self.model, self.params, part, max_tokens=max_tokens, rng=sub,
                                  min_tokens=min_tokens, **options)
            codes.append(out.tokens[:real])
            lengths.append(out.lengths[:real])
        return decoding.Decoded(np.concatenate(codes), np.concatenate(lengths))

    def motion(self, decoded: decoding.Decoded, seq_len: int | None = None) -> np.ndarray:
        """Joints (N, seq_len, 2, 21, 3) in metres from decoded codes (the module's length rule)."""
        seq_len = self.seq_len if seq_len is None else int(seq_len)
        feats = self.fsq.decode(hold_after_end(decoded.tokens, decoded.lengths))
        frames = np.maximum(decoded.lengths, 1) * self.fsq.downsample
        return self.fsq.joints(fit_frames(feats, frames, seq_len))

    def __call__(self, texts: Sequence[Sequence[str]], *, num_per_text: int = 1, seed: int = 0, batch_size: int = 64,
                 progress: bool = False, temperature=None, top_k=None, top_p=None, guidance=None,
                 max_tokens: int | None = None) -> np.ndarray:
        """Motion (N * num_per_text, seq_len, 2, 21, 3) in metres for `texts` = [(left, right, relation), ...].
        Decoding options default to the run's `config.decoding`."""
        decoded = self.tokens(texts, num_per_text=num_per_text, seed=seed, batch_size=batch_size, progress=progress,
                              temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance,
                              max_tokens=max_tokens)
        return self.motion(decoded)

    def long_horizon(self, stages: Sequence[Sequence[str]], *, num: int = 1, context: int = 10, seed: int = 0,
                     temperature=None, top_k=None, top_p=None, guidance=None) -> np.ndarray:
        """Motion (num, T + (K - 1)(T - context), 2, 21, 3) for K stages: stage k > 0 continues
        from the previous stage's last `context` frames (context / downsample tokens) with
        its own caption; every stage runs to full length (END is not allowed), and the whole
        token stream is decoded at once so the seams are the decoder's own."""
        if not stages:
            raise ValueError(f"sampling {self.workdir}: no stages given")
        ds = self.fsq.downsample
        if context % ds or not 0 < context < self.seq_len:
            raise ValueError(f"context={context} frames must be a multiple of the tokenizer's x{ds} in (0, {self.seq_len})")
        per_stage = self.seq_len // ds
        ctx = context // ds
        options = self._options(temperature, top_k, top_p, guidance)
        text = self.text_batch(list(stages))
        key = jax.random.key(seed)
        stream = np.zeros((num, 0), np.int32)
        for k in range(len(stages)):
            key, sub = jax.random.split(key)
            rows = np.repeat(text[k:k + 1], num, axis=0)
            new = per_stage if k == 0 else per_stage - ctx
            out = decoding.decode(self.model, self.params, rows, max_tokens=new, rng=sub, min_tokens=new,
                                  context=None if k == 0 else stream[:, -ctx:], **options)
            stream = np.concatenate([stream, out.tokens], axis=1)
        feats = self.fsq.decode(stream)
        return self.fsq.joints(feats)
