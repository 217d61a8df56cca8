"""`FsqRun`: a trained FSQ tokenizer restored once for encoding and decoding.

Token ids are flat indices in [0, codebook_size), where codebook_size is the product of
the FSQ levels. `key` names the tokenizer by content (its config, final EMA weights and
normalisation statistics), so token files made by another tokenizer are never mistaken for
its own.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.autoregressive import fsq


class FsqRun:
    """The EMA weights of the FSQ run in `workdir` (checkpoint `step`, default the newest)."""

    def __init__(self, workdir: str, step: int | None = None):
        import flax.linen as nn

        from handx_jax.data import normalization
        from handx_jax.train.checkpoint import restore_params
        from handx_jax.train.text_tower import params_sha256, sha256_file

        self.workdir = os.path.abspath(workdir)
        self.config, params, self.step = restore_params(self.workdir, step=step, ema=True)
        if self.config.get("family") != "fsq":
            raise ValueError(f"{self.workdir} holds a {self.config.get('family')!r} run, not an FSQ tokenizer "
                             "(configs/fsq.py)")
        self.params = jax.tree_util.tree_map(jnp.asarray, nn.unbox(params))
        self.model = fsq.model_from_config(self.config)
        self.representation = str(self.config.data.representation)
        data_dir = self.config.data.get("dir") or os.path.join(self.workdir, "data")
        stats_file = normalization.stats_path(data_dir, self.representation)
        if not os.path.isfile(stats_file):
            raise FileNotFoundError(f"FSQ run {self.workdir}: its normalisation statistics {stats_file} are missing "
                                    "(the run's data.dir moved?)")
        self.stats = normalization.load_stats(stats_file, self.representation)
        digest = hashlib.sha256()
        digest.update(json.dumps(_identity_config(self.config), sort_keys=True).encode())
        digest.update(params_sha256(self.params).encode())
        digest.update(sha256_file(stats_file).encode())
        self.sha256 = digest.hexdigest()
        self._encode = jax.jit(lambda p, x: self.model.apply({"params": p}, x, method="encode"))
        self._decode = jax.jit(lambda p, c: self.model.apply({"params": p}, c, method="decode"))

    @property
    def key(self) -> str:
        """Identity string, e.g. `fsq1000-x2-3f2a9c01d4e7`."""
        return f"fsq{self.codebook_size}-x{self.downsample}-{self.sha256[:12]}"

    @property
    def downsample(self) -> int:
        return int(self.model.downsample)

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(self.model.levels)

    @property
    def codebook_size(self) -> int:
        return fsq.codebook_size(self.model.levels)

    @property
    def seq_len(self) -> int:
        return int(self.config.data.seq_len)

    def meta(self) -> dict:
        return {"fsq_key": self.key, "codebook_size": self.codebook_size, "downsample": self.downsample,
                "representation": self.representation, "levels": list(self.levels), "fsq_dir": self.workdir,
                "fsq_step": self.step}

    def encode(self, features_btf) -> np.ndarray:
        """Normalised features (B, T, F), T a multiple of `downsample` -> int32 codes (B, T // downsample)."""
        x = np.asarray(features_btf, np.float32)
        if x.ndim != 3 or x.shape[1] % self.downsample:
            raise ValueError(f"FsqRun.encode: features of shape {x.shape}; need (B, T, F) with T a multiple of "
                             f"{self.downsample}")
        return np.asarray(self._encode(self.params, x), np.int32)

    def decode(self, codes_bl) -> np.ndarray:
        """Token ids (B, L) in [0, codebook_size) -> float32 normalised features (B, L * downsample, F)."""
        codes = np.asarray(codes_bl)
        if codes.ndim != 2:
            raise ValueError(f"FsqRun.decode: codes of shape {codes.shape}; need (B, L)")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"FsqRun.decode: token ids outside [0, {self.codebook_size}) "
                             f"(min {codes.min()}, max {codes.max()})")
        return np.asarray(self._decode(self.params, codes.astype(np.int32)), np.float32)

    def features(self, motion_btjc) -> np.ndarray:
        """Joints (B, T, 2, 21, 3) in metres -> normalised features (B, T, F)."""
        from handx_jax.data import representations

        feats = representations.to_features(np.asarray(motion_btjc, np.float32), self.representation)
        return self.stats.normalize(feats).astype(np.float32)

    def joints(self, features_btf) -> np.ndarray:
        """Normalised features (B, T, F) -> centred joints (B, T, 2, 21, 3) in metres."""
        from handx_jax.data import representations

        return np.asarray(representations.to_joints(self.stats.denormalize(np.asarray(features_btf, np.float32)),
                                                    self.representation), np.float32)


def _identity_config(config) -> dict:
    """The config fields that decide what codes mean (not paths or schedules)."""
    plain = config.to_dict()
    return {"model": plain.get("model"), "data": {"representation": plain["data"]["representation"],
                                                   "seq_len": plain["data"]["seq_len"]}}
