"""DiffusionTask: protocol methods, boxed logical names, and a T model that learns."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handx_jax import configlib
from handx_jax.diffusion.task import DiffusionTask

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "diffusion.py")
ALLOWED = {"batch", "embed", "mlp", "heads", "kv", "vocab", "length", "feature", "joints", None}


def _toy_batch(task, b=8, seed=0):
    """Smooth motions whose phase is named by the text: a learnable text-to-motion toy."""
    rng = np.random.default_rng(seed)
    batch = task.dummy_batch(b)
    t = np.linspace(0, 2 * np.pi, batch["motion"].shape[1])
    phase = rng.integers(0, 4, size=b)
    freq = np.linspace(0.5, 2.0, batch["motion"].shape[2])
    batch["motion"] = np.sin(t[None, :, None] * freq + phase[:, None, None] * np.pi / 2).astype(np.float32)
    if "text_embedding" in batch:  # caption embeddings naming the phase, one per role
        emb = np.zeros_like(batch["text_embedding"])
        for i in range(3):
            emb[np.arange(b), i, phase + 4 * i] = 1.0
        batch["text_embedding"] = emb
        return batch
    for i, role in enumerate(("left", "right", "relation")):
        tok = np.zeros_like(batch[f"tokens_{role}"])
        tok[:, 0] = 2 + phase + 4 * i
        batch[f"tokens_{role}"] = tok
        batch[f"tokens_{role}_mask"] = (tok != 0).astype(np.float32)
    return batch


def test_params_are_boxed_with_allowed_names():
    task = DiffusionTask(configlib.load_config(CONFIG + ":size=T"))
    params = task.init_params(jax.random.key(0), task.dummy_batch())
    leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda v: isinstance(v, nn.Partitioned))
    assert len(leaves) > 20
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned)
        assert set(leaf.names) <= ALLOWED and len(leaf.names) == leaf.value.ndim


@pytest.mark.parametrize("text", ["tower", "scratch"])
def test_t_config_trains_and_loss_falls(text):
    config = configlib.load_config(CONFIG + f":size=T,text={text}")
    task = DiffusionTask(config)
    batch = {k: jnp.asarray(v) for k, v in _toy_batch(task).items()}
    params = nn.meta.unbox(task.init_params(jax.random.key(0), batch))
    opt = optax.adamw(2e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, rng):
        (loss, terms), grads = jax.value_and_grad(task.loss, has_aux=True)(params, batch, rng)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, terms

    eval_keys = jax.random.split(jax.random.key(42), 8)
    evaluate = jax.jit(lambda p: jnp.mean(jax.vmap(lambda k: task.loss(p, batch, k)[0])(eval_keys)))
    first = float(evaluate(params))
    rng = jax.random.key(1)
    for _ in range(60):
        rng, key = jax.random.split(rng)
        params, opt_state, loss, terms = step(params, opt_state, key)
    assert set(terms) == {"loss_rep", "loss_vel", "loss_acc"}
    assert all(np.isfinite(float(v)) for v in terms.values())
    last = float(evaluate(params))
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("text", ["tower", "scratch"])
def test_flops_close_to_xla_cost_analysis(text):
    config = configlib.load_config(CONFIG + f":size=T,text={text}")
    task = DiffusionTask(config)
    batch = {k: jnp.asarray(v) for k, v in task.dummy_batch(2).items()}
    params = nn.meta.unbox(task.init_params(jax.random.key(0), batch))
    grad = jax.jit(jax.grad(lambda p: task.loss(p, batch, jax.random.key(0))[0]))
    cost = grad.lower(params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla = float(cost["flops"]) / 2
    # The analytic count covers matmuls only (elementwise work is small); within 35 %.
    assert 0.65 < task.flops_per_example() / xla < 1.35, (task.flops_per_example(), xla)


def test_precomputed_text_embeddings_path(tmp_path):
    path = tmp_path / "emb.npz"
    captions = np.array(["open", "fist", "apart"])
    np.savez(path, captions=captions, embeddings=np.eye(3, 5, dtype=np.float32))
    config = configlib.load_config(CONFIG + ":size=T,text=file")
    config.model.text_embeddings_path = str(path)
    task = DiffusionTask(config)
    transform = task.text_transform()
    example = transform.map({"caption_left": "fist", "caption_right": "open", "caption_relation": "apart",
                             "motion": np.zeros((60, 168), np.float32), "mask": np.ones(60, np.float32)})
    assert example["text_embedding"].shape == (3, 5)
    batch = {k: jnp.asarray(np.stack([v, v])) for k, v in example.items()}
    params = task.init_params(jax.random.key(0), batch)
    assert "tokens" not in str(jax.tree_util.tree_structure(params))
    loss, terms = jax.jit(task.loss)(nn.meta.unbox(params), batch, jax.random.key(1))
    assert np.isfinite(float(loss)) and set(terms) == {"loss_rep", "loss_vel", "loss_acc"}
    # Different captions give a different condition.
    model = task.make_model()
    from handx_jax.models.diffusion import MotionDenoiser
    cond = model.apply({"params": params}, {"text_embedding": batch["text_embedding"]}, method=MotionDenoiser.encode_condition)
    other_captions = transform.map({"caption_left": "open", "caption_right": "open", "caption_relation": "apart"})
    other_batch = jnp.asarray(np.stack([other_captions["text_embedding"]] * 2))
    other = model.apply({"params": params}, {"text_embedding": other_batch}, method=MotionDenoiser.encode_condition)
    assert np.abs(np.asarray(cond - other)).max() > 1e-4
