"""A tiny transformer regression task for the trainer's tests.

It uses the project's logical axis names (embed, heads, kv, mlp, feature, batch, length)
and a deterministic grain pipeline over random numeric sequences, so the trainer's tests
need nothing from the other stages. `toy.sleep_s` slows the input pipeline (host only,
numerics unchanged) so subprocess tests can interrupt a run mid-way.
"""

from __future__ import annotations

import os
import time

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from handx_jax.train import flops as flops_lib
from handx_jax.train.task import Task

TOY_TASK = "tests.train.toy_task:ToyTask"


def get_config(arg=None) -> ml_collections.ConfigDict:
    """A complete trainer config for the toy task (same fields as a real task config)."""
    c = ml_collections.ConfigDict()
    c.task = TOY_TASK
    c.size = "toy"
    c.model = ml_collections.ConfigDict(dict(layers=2, d_model=32, heads=4, ff=64, dropout=0.1))
    c.data = ml_collections.ConfigDict(dict(dir=os.path.dirname(os.path.abspath(__file__)), ratio=1.0, seq_len=8, representation="toy",
                                            num_synthetic_clips=0, features=6, num_examples=256))
    c.train = ml_collections.ConfigDict(dict(
        steps=20, batch_size=8, lr=3e-3, warmup_steps=4, weight_decay=0.01, grad_clip=1.0,
        ema_decay=0.9, seed=0, log_every=1, ckpt_every=10, keep_checkpoints=3, peak_flops=1e11,
        progress=False))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.toy = ml_collections.ConfigDict(dict(sleep_s=0.0, nan_at_step=-1))
    return c


class Block(nn.Module):
    d_model: int
    heads: int
    ff: int
    dropout: float

    @nn.compact
    def __call__(self, x_btd, deterministic: bool):
        init = nn.initializers.lecun_normal()
        kv = self.d_model // self.heads
        h = nn.LayerNorm(scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                         bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x_btd)
        w_qkv = self.param("qkv", nn.with_logical_partitioning(init, ("embed", None, "heads", "kv")),
                           (self.d_model, 3, self.heads, kv))
        qkv = jnp.einsum("btd,dchk->cbthk", h, w_qkv)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = jnp.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(kv)
        att = jnp.einsum("bhqs,bshk->bqhk", jax.nn.softmax(logits, axis=-1), v)
        att = nn.with_logical_constraint(att, ("batch", "length", "heads", "kv"))
        w_out = self.param("out", nn.with_logical_partitioning(init, ("heads", "kv", "embed")),
                           (self.heads, kv, self.d_model))
        out = jnp.einsum("bthk,hkd->btd", att, w_out)
        x_btd = x_btd + nn.Dropout(self.dropout)(out, deterministic=deterministic)
        h = nn.Dense(self.ff, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")),
                     bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x_btd)
        h = nn.with_logical_constraint(jax.nn.gelu(h), ("batch", "length", "mlp"))
        h = nn.Dense(self.d_model, kernel_init=nn.with_logical_partitioning(init, ("mlp", "embed")),
                     bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(h)
        return x_btd + nn.Dropout(self.dropout)(h, deterministic=deterministic)


class ToyModel(nn.Module):
    layers: int
    d_model: int
    heads: int
    ff: int
    dropout: float
    features: int

    @nn.compact
    def __call__(self, x_btf, deterministic: bool = True):
        init = nn.initializers.lecun_normal()
        x = nn.Dense(self.d_model, kernel_init=nn.with_logical_partitioning(init, ("feature", "embed")),
                     bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x_btf)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        for _ in range(self.layers):
            x = Block(self.d_model, self.heads, self.ff, self.dropout)(x, deterministic)
        return nn.Dense(self.features, kernel_init=nn.with_logical_partitioning(init, ("embed", "feature")),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("feature",)))(x)


def make_example(index: int, seq_len: int, features: int) -> dict:
    """Input sequence and a fixed nonlinear target, both from the example's own seed."""
    rng = np.random.default_rng(int(index))
    x = rng.standard_normal((seq_len, features)).astype(np.float32)
    y = np.tanh(np.cumsum(x, axis=0) * 0.5).astype(np.float32)
    return {"x": x, "y": y}


class _Example(grain.transforms.Map):
    def __init__(self, seq_len, features, sleep_s):
        self.seq_len, self.features, self.sleep_s = seq_len, features, sleep_s

    def map(self, index):
        return make_example(index, self.seq_len, self.features)


class _Slow(grain.transforms.Map):
    def __init__(self, sleep_s):
        self.sleep_s = sleep_s

    def map(self, batch):
        time.sleep(self.sleep_s)
        return batch


class _PoisonFrom(grain.transforms.MapWithIndex):
    def __init__(self, step):
        self.step = step

    def map_with_index(self, index, batch):
        if index + 1 >= self.step:
            batch = {**batch, "y": np.full_like(batch["y"], np.nan)}
        return batch


class ToyTask(Task):
    resume_safe_fields = ("toy.sleep_s", "toy.nan_at_step")  # test hooks, not part of the run's meaning

    def __init__(self, config):
        super().__init__(config)
        m = config.model
        self.model = ToyModel(m.layers, m.d_model, m.heads, m.ff, m.dropout, config.data.features)

    def make_model(self):
        return self.model

    def init_params(self, rng, batch):
        return self.model.init({"params": rng}, batch["x"])["params"]

    def loss(self, params, batch, rng):
        pred = self.model.apply({"params": params}, batch["x"], deterministic=False,
                                rngs={"dropout": rng})
        err = pred - batch["y"]
        mse = jnp.mean(err ** 2)
        l1 = jnp.mean(jnp.abs(err))
        return mse + 0.1 * l1, {"mse": mse, "l1": l1}

    def train_inputs(self, *, batch_size, seed, shard_index, shard_count):
        d = self.config.data
        ds = grain.MapDataset.range(int(d.num_examples))
        ds = ds.shuffle(seed=seed).repeat(None)
        ds = ds[shard_index::shard_count].map(_Example(d.seq_len, d.features, 0.0))
        ds = ds.batch(batch_size, drop_remainder=True)
        nan_at = int(self.config.toy.get("nan_at_step", -1))
        if nan_at >= 0:  # test hook: targets become NaN from update step `nan_at` on
            ds = ds.map_with_index(_PoisonFrom(nan_at))
        if float(self.config.toy.sleep_s) > 0:
            ds = ds.map(_Slow(float(self.config.toy.sleep_s)))
        return ds.to_iter_dataset()

    def flops_per_example(self):
        m, d = self.config.model, self.config.data
        return flops_lib.transformer_train_flops(
            seq_len=d.seq_len, d_model=m.d_model, layers=m.layers, ff=m.ff,
            in_features=d.features, out_features=d.features)
