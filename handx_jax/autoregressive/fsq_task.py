"""`FsqTask`: the FSQ motion tokenizer plugged into the generic trainer (configs/fsq.py).

Loss on normalised features, masked to valid frames: smooth-L1 reconstruction, plus
`fsq.loss_vel` x smooth-L1 of frame-to-frame differences, plus `fsq.loss_bone` x the L1
bone-length error in centimetres (joints recovered from the de-normalised features).
Logged terms: `loss_rec`, `loss_vel`, `loss_bone`, and the batch's codebook `usage`
(fraction of codes used) and `perplexity`. The held-out loss adds `mpjpe_mm`.
"""

from __future__ import annotations

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.autoregressive import fsq
from handx_jax.data import representations, store
from handx_jax.hand import skeleton

NUMERIC_KEYS = ("motion", "mask", "length", "clip_index")
_BONES = np.asarray(skeleton.BONES, np.int32)  # (20, 2) parent, child


class NumericOnly(grain.transforms.Map):
    """Drop the caption strings: the tokenizer reads motion only."""

    def map(self, element: dict) -> dict:
        return {k: v for k, v in element.items() if k in NUMERIC_KEYS}


def smooth_l1(x, beta: float):
    a = jnp.abs(x)
    return jnp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)


def masked_mean(values_bt, mask_bt):
    """Mean of per-frame values over valid frames."""
    return jnp.sum(values_bt * mask_bt) / jnp.maximum(jnp.sum(mask_bt), 1.0)


def code_statistics(codes_bl, token_mask_bl, size: int):
    """(usage, perplexity) of the valid codes of a batch: fraction of the codebook used and
    exp(entropy) of the code histogram."""
    counts = jnp.bincount(codes_bl.reshape(-1), weights=token_mask_bl.reshape(-1), length=size)
    probs = counts / jnp.maximum(counts.sum(), 1.0)
    entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0))
    return jnp.sum(counts > 0) / size, jnp.exp(entropy)


class FsqTask:
    """Task protocol implementation for `configs/fsq.py`."""

    def __init__(self, config):
        self.config = config
        self.model = fsq.model_from_config(config)
        self.representation = str(config.data.representation)
        self.seq_len = int(config.data.seq_len)
        if self.seq_len % self.model.downsample:
            raise ValueError(f"configs/fsq.py: data.seq_len {self.seq_len} is not a multiple of the downsampling "
                             f"factor {self.model.downsample} (patch_size x 2**down_levels)")
        self.codebook_size = fsq.codebook_size(self.model.levels)
        self._stats = None

    # -- model ------------------------------------------------------------------------
    def make_model(self) -> nn.Module:
        return self.model

    def dummy_batch(self, batch_size: int = 2) -> dict:
        f = representations.FEATURE_DIMS[self.representation]
        return {"motion": np.zeros((batch_size, self.seq_len, f), np.float32),
                "mask": np.ones((batch_size, self.seq_len), np.float32)}

    def init_params(self, rng, batch=None):
        batch = self.dummy_batch() if batch is None else batch
        return jax.jit(lambda r, x: self.model.init(r, x)["params"])(rng, jnp.asarray(batch["motion"]))

    def stats(self):
        """Normalisation statistics of the run's data (read once, on first use)."""
        if self._stats is None:
            from handx_jax.data import normalization

            self._stats = normalization.load_or_compute_stats(self.data_dir(), self.representation)
        return self._stats

    # -- losses -----------------------------------------------------------------------
    def _terms(self, params, batch):
        x = batch["motion"].astype(jnp.float32)
        mask = batch["mask"].astype(jnp.float32)
        recon, codes = self.model.apply({"params": params}, x)
        beta = float(self.config.fsq.smooth_l1_beta)
        rec = masked_mean(jnp.mean(smooth_l1(recon - x, beta), -1), mask)
        vel_mask = mask[:, 1:] * mask[:, :-1]
        vel = masked_mean(jnp.mean(smooth_l1(jnp.diff(recon, axis=1) - jnp.diff(x, axis=1), beta), -1), vel_mask)
        stats = self.stats()
        mean, std = jnp.asarray(stats.mean, jnp.float32), jnp.asarray(stats.std, jnp.float32)
        joints_hat = representations.to_joints(recon * std + mean, self.representation)
        joints = representations.to_joints(x * std + mean, self.representation)
        bone = masked_mean(jnp.mean(jnp.abs(bone_lengths(joints_hat) - bone_lengths(joints)), (-1, -2)) * 100.0, mask)
        token_mask = mask[:, :: self.model.downsample]
        usage, perplexity = code_statistics(codes, token_mask, self.codebook_size)
        mpjpe = masked_mean(jnp.mean(jnp.linalg.norm(joints_hat - joints, axis=-1), (-1, -2)), mask) * 1000.0
        loss = rec + float(self.config.fsq.loss_vel) * vel + float(self.config.fsq.loss_bone) * bone
        return loss, {"loss_rec": rec, "loss_vel": vel, "loss_bone": bone, "usage": usage, "perplexity": perplexity,
                      "mpjpe_mm": mpjpe}

    def loss(self, params, batch, rng):
        """(weighted loss, terms) on one batch; pure (the tokenizer has no randomness)."""
        del rng
        loss, terms = self._terms(params, batch)
        terms.pop("mpjpe_mm")
        return loss, terms

    def eval_loss(self, params, batch):
        """Held-out loss: the training loss plus `mpjpe_mm` (joint error in millimetres)."""
        return self._terms(params, batch)

    # -- inputs -----------------------------------------------------------------------
    def data_dir(self) -> str:
        return store.config_data_dir(self.config)

    def train_inputs(self, *, batch_size, seed, shard_index=None, shard_count=None, split="train", **kwargs):
        from handx_jax.data import pipeline

        c = self.config
        return pipeline.make_dataset(
            self.data_dir(), split, batch_size=batch_size, seq_len=self.seq_len, representation=self.representation,
            normalize=True, shuffle=True, seed=seed, data_ratio=float(c.data.ratio), extra_transforms=(NumericOnly(),),
            shard_index=shard_index, shard_count=shard_count, worker_count=int(c.data.get("worker_count", 0)), **kwargs)

    def eval_inputs(self, *, batch_size, shard_index=None, shard_count=None):
        """The whole test split in order, one pass."""
        from handx_jax.data import pipeline

        return pipeline.make_dataset(
            self.data_dir(), "test", batch_size=batch_size, seq_len=self.seq_len, representation=self.representation,
            normalize=True, shuffle=False, seed=0, num_epochs=1, extra_transforms=(NumericOnly(),),
            shard_index=shard_index, shard_count=shard_count)

    def flops_per_example(self) -> float:
        """Analytic training FLOPs per clip: 3 x the convolutions' forward FLOPs."""
        return 3.0 * fsq.forward_flops(self.config)


def bone_lengths(joints):
    """(..., 21, 3) -> (..., 20) lengths of the skeleton's bones."""
    return jnp.linalg.norm(joints[..., _BONES[:, 1], :] - joints[..., _BONES[:, 0], :], axis=-1)
