"""`DiffusionTask`: the MDM-style diffusion family plugged into the generic trainer.

Implements the Task protocol of docs/CONTRACTS.md: model construction, boxed parameter
initialisation, the pure training loss (x0 prediction, cosine schedule, condition
dropout for classifier-free guidance), the grain input pipeline with the caption
tokenizer, and analytic training FLOPs.
"""

from __future__ import annotations

import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.data import store
from handx_jax.diffusion import losses, schedule as schedule_lib
from handx_jax.models import diffusion as diffusion_model
from handx_jax.text import tokenizer as tokenizer_lib

EVAL_NOISE_SEED = 20261201  # the fixed noise of the held-out loss
TEXT_KEYS = tuple(f"tokens_{r}{s}" for r in tokenizer_lib.ROLES for s in ("", "_mask")) + ("text_embedding",)


class DiffusionTask:
    """Task protocol implementation for `configs/diffusion.py`."""

    def __init__(self, config):
        self.config = config
        self.model = diffusion_model.model_from_config(config)
        self.schedule = schedule_lib.make_schedule(int(config.diffusion.num_steps), str(config.diffusion.schedule))
        self.loss_weights = {
            "rep": float(config.diffusion.loss_rep),
            "vel": float(config.diffusion.loss_vel),
            "acc": float(config.diffusion.loss_acc),
        }
        # Geometric terms on the predicted joints (losses.geometric_losses); 0 = off.
        self.geometric_weights = {k: float(config.diffusion.get(f"loss_{k}", 0.0)) for k in losses.GEOMETRIC_TERMS}
        self.contact_emphasis = float(config.diffusion.get("contact_emphasis", 4.0))
        self._stats = None  # normalisation statistics, loaded on first use by the geometric terms
        self._text_transform = None  # made on first use (text_transform)
        self._text_init = None  # text-encoder weights from `model.text_init_from`, loaded on first init
        if bool(config.model.get("text_frozen", False)) and float(config.train.get("weight_decay", 0.0)) > 0:
            raise ValueError("model.text_frozen needs train.weight_decay = 0 (decay would still shrink the frozen text encoder)")

    # -- model -------------------------------------------------------------------------
    def make_model(self) -> nn.Module:
        return self.model

    def dummy_batch(self, batch_size: int = 2) -> dict:
        """A zero batch with the pipeline's numeric fields (for init and shape checks)."""
        c = self.config
        t, f = int(c.data.seq_len), diffusion_model.feature_dim(c)
        batch = {"motion": np.zeros((batch_size, t, f), np.float32), "mask": np.ones((batch_size, t), np.float32)}
        if diffusion_model.text_source(c) == "tokens":
            for role in tokenizer_lib.ROLES:
                batch[f"tokens_{role}"] = np.zeros((batch_size, int(c.model.text_max_len)), np.int32)
                batch[f"tokens_{role}_mask"] = np.zeros((batch_size, int(c.model.text_max_len)), np.float32)
        else:
            batch["text_embedding"] = np.zeros((batch_size, 3, self.text_embed_dim()), np.float32)
        return batch

    def init_params(self, rng, batch=None):
        """Parameters boxed with logical axis names (`nn.LogicallyPartitioned`)."""
        batch = self.dummy_batch() if batch is None else batch
        x = jnp.asarray(batch["motion"])
        b = x.shape[0]

        text_init = self.text_init_params()

        def init(rng, x, mask, text):  # jitted: eager init of many small ops is slow on CPU
            params = self.model.init(
                {"params": rng, "dropout": rng}, x, jnp.zeros((b,), jnp.int32), mask, text, jnp.zeros((b,), bool),
            )["params"]
            if text_init is not None:
                params = dict(params, text_encoder=load_into(params["text_encoder"], text_init, self.config.model.text_init_from))
            return params

        return jax.jit(init)(rng, x, jnp.asarray(batch["mask"]), text_inputs(batch))

    def text_init_params(self):
        """Text-encoder weights of the run named by `model.text_init_from` (None when unset)."""
        src = self.config.model.get("text_init_from", "")
        if not src or diffusion_model.text_source(self.config) != "tokens":
            return None
        if self._text_init is None:
            with jax.ensure_compile_time_eval():  # the trainer calls init_params under eval_shape / jit
                self._text_init = load_text_tower(str(src), self.data_dir())
        return self._text_init

    # -- training ------------------------------------------------------------------------
    def loss(self, params, batch, rng):
        """(weighted loss, {'loss_rep', 'loss_vel', 'loss_acc'}) on one batch; pure."""
        x0 = batch["motion"].astype(jnp.float32)
        mask = batch["mask"].astype(jnp.float32)
        b = x0.shape[0]
        t_key, noise_key, drop_key, dropout_key = jax.random.split(rng, 4)
        t = jax.random.randint(t_key, (b,), 0, self.schedule.num_steps)
        noise = jax.random.normal(noise_key, x0.shape, jnp.float32)
        alpha_bar = jnp.asarray(self.schedule.alpha_bar, jnp.float32)
        x_t = schedule_lib.q_sample(alpha_bar, x0, t, noise)
        drop = jax.random.bernoulli(drop_key, float(self.config.model.cond_dropout), (b,))
        deterministic = float(self.config.model.dropout) == 0.0
        x0_hat = self.model.apply(
            {"params": params}, x_t, t, mask, text_inputs(batch), drop,
            deterministic=deterministic, rngs=None if deterministic else {"dropout": dropout_key},
        )
        return self._losses(x0_hat, x0, mask)

    def _losses(self, x0_hat, x0, mask):
        """The feature losses plus the enabled geometric terms (on de-normalised joints)."""
        total, terms = losses.diffusion_losses(x0_hat, x0, mask, self.loss_weights)
        if not any(self.geometric_weights.values()):
            return total, terms
        joints_hat, joints = self.joints(x0_hat), self.joints(x0)
        geo = losses.geometric_losses(joints_hat, joints, mask, self.contact_emphasis)
        for name, weight in self.geometric_weights.items():
            if weight:
                total = total + weight * geo[f"loss_{name}"]
                terms[f"loss_{name}"] = geo[f"loss_{name}"]
        return total, terms

    def joints(self, x_btf):
        """Centred joints (B, T, 2, 21, 3) in metres of normalised features."""
        from handx_jax.data import normalization, representations

        rep = str(self.config.data.representation)
        if self._stats is None:
            self._stats = normalization.load_or_compute_stats(self.data_dir(), rep)
        mean = jnp.asarray(self._stats.mean, x_btf.dtype)
        std = jnp.asarray(self._stats.std, x_btf.dtype)
        return representations.to_joints(x_btf * std + mean, rep)

    def eval_loss(self, params, batch):
        """Held-out loss: the training loss (conditional, no dropout) averaged over a fixed grid
        of `diffusion.eval_timesteps` timesteps with fixed noise, so every checkpoint is scored
        on identical draws. Returns (loss, terms) like `loss`."""
        x0 = batch["motion"].astype(jnp.float32)
        mask = batch["mask"].astype(jnp.float32)
        b = x0.shape[0]
        grid = np.linspace(0, self.schedule.num_steps - 1, int(self.config.diffusion.get("eval_timesteps", 8)))
        alpha_bar = jnp.asarray(self.schedule.alpha_bar, jnp.float32)
        text = text_inputs(batch)
        total, terms_sum = 0.0, {}
        for k, t_value in enumerate(np.round(grid).astype(np.int32)):
            noise = jax.random.normal(jax.random.fold_in(jax.random.key(EVAL_NOISE_SEED), k), x0.shape, jnp.float32)
            t = jnp.full((b,), t_value, jnp.int32)
            x0_hat = self.model.apply({"params": params}, schedule_lib.q_sample(alpha_bar, x0, t, noise), t, mask,
                                      text, jnp.zeros((b,), bool), deterministic=True)
            loss, terms = self._losses(x0_hat, x0, mask)
            total = total + loss
            terms_sum = {name: terms_sum.get(name, 0.0) + v for name, v in terms.items()}
        n = len(grid)
        return total / n, {name: v / n for name, v in terms_sum.items()}

    def eval_inputs(self, *, batch_size, shard_index=None, shard_count=None):
        """The whole test split in order, one pass, the first caption draw of seed 0."""
        from handx_jax.data import pipeline

        c = self.config
        return pipeline.make_dataset(
            self.data_dir(), "test", batch_size=batch_size, seq_len=int(c.data.seq_len),
            representation=str(c.data.representation), normalize=True, shuffle=False, seed=0, num_epochs=1,
            extra_transforms=(self.text_transform(),), shard_index=shard_index, shard_count=shard_count)

    def data_dir(self) -> str:
        return store.config_data_dir(self.config)

    def text_embed_dim(self) -> int:
        """Width of the precomputed caption embeddings: the tower's (`model.text_embed_dim`) or
        the given file's."""
        c = self.config
        if str(c.model.get("text", "")) == "file" or (c.model.get("text") is None and c.model.get("text_embeddings_path")):
            return tokenizer_lib.load_text_embeddings(file_embeddings_path(c)).dim
        return int(c.model.text_embed_dim)

    def text_transform(self):
        """The grain MapTransform turning captions into numeric text inputs (for `tower`, the
        tower and its embeddings are made first when missing, and recorded in the config).
        Made once per task: the train and held-out inputs share it (and its table)."""
        if self._text_transform is None:
            self._text_transform = self._make_text_transform()
        return self._text_transform

    def _make_text_transform(self):
        c = self.config
        if diffusion_model.text_source(c) == "embeddings":
            from handx_jax.train import text_tower

            if text_tower.uses_tower(c):
                table = text_tower.prepare_run(c)
                return tokenizer_lib.LookupTextEmbeddings(table.path, table)
            return tokenizer_lib.LookupTextEmbeddings(file_embeddings_path(c))
        return tokenizer_lib.tokenize_transform(self.data_dir(), int(c.model.vocab_size), int(c.model.text_max_len))

    def train_inputs(self, *, batch_size, seed, shard_index=None, shard_count=None, split="train", **kwargs):
        """grain IterDataset of numeric batches (motion, mask, length, clip_index, text inputs)."""
        from handx_jax.data import pipeline

        c = self.config
        return pipeline.make_dataset(
            self.data_dir(), split, batch_size=batch_size, seq_len=int(c.data.seq_len),
            representation=str(c.data.representation), normalize=True, shuffle=True, seed=seed,
            data_ratio=float(c.data.ratio), extra_transforms=(self.text_transform(),),
            shard_index=shard_index, shard_count=shard_count,
            worker_count=int(c.data.get("worker_count", 0)), **kwargs,
        )

    def flops_per_example(self) -> float:
        """Analytic training FLOPs per example: 3 x forward matmul FLOPs (attention included)."""
        return 3.0 * diffusion_model.forward_flops(self.config)


def file_embeddings_path(config) -> str:
    path = str(config.model.get("text_embeddings_path", "") or "")
    if not path:
        raise ValueError("config.model.text = 'file' needs config.model.text_embeddings_path (an npz of caption embeddings)")
    return path


def load_text_tower(workdir: str, data_dir: str) -> dict:
    """The (EMA) `text_encoder` weights of a run (e.g. an evaluator), as numpy arrays.

    Its tokenizer must be the dataset's: token ids mean nothing across tokenizers.
    """
    from handx_jax.train.checkpoint import restore_params

    ours, theirs = os.path.join(data_dir, "spm.model"), os.path.join(workdir, "spm.model")
    if os.path.exists(ours) and os.path.exists(theirs):
        with open(ours, "rb") as a, open(theirs, "rb") as b:
            if a.read() != b.read():
                raise ValueError(f"model.text_init_from: {theirs} differs from the dataset's tokenizer {ours}")
    _, params, _ = restore_params(workdir, ema=True)
    params = nn.unbox(params)
    if "text_encoder" not in params:
        raise ValueError(f"model.text_init_from: the run {workdir} has no text_encoder parameters (has {sorted(params)})")
    return jax.tree_util.tree_map(np.asarray, params["text_encoder"])


def load_into(boxed, values, source: str):
    """Replace the values of a boxed parameter tree by `values` (same structure and shapes)."""
    flat_b = flax.traverse_util.flatten_dict(boxed, sep="/")
    flat_v = flax.traverse_util.flatten_dict(values, sep="/")
    if sorted(flat_b) != sorted(flat_v):
        raise ValueError(f"model.text_init_from {source}: text encoder parameters differ: "
                         f"missing {sorted(set(flat_b) - set(flat_v))}, extra {sorted(set(flat_v) - set(flat_b))}")
    out = {}
    for k, box in flat_b.items():
        shape = nn.unbox(box).shape
        if tuple(shape) != tuple(flat_v[k].shape):
            raise ValueError(f"model.text_init_from {source}: text_encoder/{k} is {flat_v[k].shape} there, {tuple(shape)} here; "
                             "set model.text_layers/text_d_model/text_mlp_dim/text_heads/text_max_len/vocab_size to match")
        value = jnp.asarray(flat_v[k], nn.unbox(box).dtype)
        out[k] = box.replace_boxed(value) if isinstance(box, nn.meta.AxisMetadata) else value
    return flax.traverse_util.unflatten_dict(out, sep="/")


def text_inputs(batch) -> dict:
    """The text fields of a batch (token ids and masks, or precomputed embeddings)."""
    return {k: jnp.asarray(batch[k]) for k in TEXT_KEYS if k in batch}
