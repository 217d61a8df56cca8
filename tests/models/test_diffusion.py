"""MDM denoiser shapes and masking, and every diffusion config size builds."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax import configlib
from handx_jax.diffusion.task import DiffusionTask
from handx_jax.models import diffusion as diffusion_model
from handx_jax.models.transformer import count_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "diffusion.py")


def _config_module():
    spec = importlib.util.spec_from_file_location("diffusion_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_task(text="tower"):
    return DiffusionTask(configlib.load_config(CONFIG + f":size=T,text={text}"))


def _batch(task, b=3, seed=0):
    batch = task.dummy_batch(b)
    rng = np.random.default_rng(seed)
    batch["motion"] = rng.normal(size=batch["motion"].shape).astype(np.float32)
    if "text_embedding" in batch:
        batch["text_embedding"] = rng.normal(size=batch["text_embedding"].shape).astype(np.float32)
        return batch
    for role in ("left", "right", "relation"):
        tok = rng.integers(2, 50, size=batch[f"tokens_{role}"].shape).astype(np.int32)
        tok[:, 10:] = 0
        batch[f"tokens_{role}"] = tok
        batch[f"tokens_{role}_mask"] = (tok != 0).astype(np.float32)
    return batch


@pytest.mark.parametrize("text_mode", ["tower", "scratch"])
def test_denoiser_shapes_mask_and_condition(text_mode):
    task = _tiny_task(text_mode)
    model = task.make_model()
    batch = _batch(task)
    params = task.init_params(jax.random.key(0), batch)
    x = jnp.asarray(batch["motion"])
    mask = jnp.asarray(batch["mask"]).at[0, 50:].set(0.0)
    t = jnp.array([0, 500, 999])
    text = {k: jnp.asarray(v) for k, v in batch.items() if k.startswith("tokens") or k == "text_embedding"}
    apply = jax.jit(model.apply, static_argnames=("method",))
    out = apply({"params": params}, x, t, mask, text)
    assert out.shape == x.shape and out.dtype == jnp.float32
    # Padded frames do not influence valid ones.
    out2 = apply({"params": params}, x.at[0, 50:].set(9.0), t, mask, text)
    np.testing.assert_allclose(out[0, :50], out2[0, :50], atol=1e-5)
    # The condition and the timestep change the prediction; the null condition is zero.
    dropped = apply({"params": params}, x, t, mask, text, jnp.array([True, False, False]))
    assert np.abs(np.asarray(dropped[0] - out[0])).max() > 1e-4
    np.testing.assert_allclose(dropped[1:], out[1:], atol=1e-6)
    cond = apply({"params": params}, text, method=diffusion_model.MotionDenoiser.encode_condition)
    null = apply({"params": params}, x, t, mask, jnp.zeros_like(cond), method=diffusion_model.MotionDenoiser.denoise)
    np.testing.assert_allclose(null[0], dropped[0], atol=1e-5)
    other_t = apply({"params": params}, x, t[::-1], mask, text)
    assert np.abs(np.asarray(other_t[0] - out[0])).max() > 1e-4


@pytest.mark.parametrize("size", ["T", "XS", "S", "M", "L"])
def test_every_size_parses_and_builds(size):
    config = configlib.load_config(f"{CONFIG}:size={size},data=0.05")
    assert config.task == "handx_jax.diffusion.task:DiffusionTask"
    assert config.data.ratio == 0.05 and config.size == size
    for field in ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip", "ema_decay",
                  "seed", "log_every", "ckpt_every", "keep_checkpoints"):
        assert field in config.train
    task = DiffusionTask(config)
    shapes = jax.eval_shape(lambda: task.init_params(jax.random.key(0)))
    layers, d, ff = _config_module().SIZES[size][:3]
    enc = shapes["encoder"]
    assert len([k for k in enc if k.startswith("layer_")]) == layers
    assert enc["layer_0"]["mlp"]["wi"]["kernel"].value.shape == (d, ff)
    denoiser = count_params(shapes) - count_params(shapes["text_encoder"])
    # Per layer: fused qkv + out (4 d^2 + 4 d), MLP (2 d ff + d + ff), two norms (4 d).
    per_layer = 4 * d * d + 4 * d + 2 * d * ff + d + ff + 4 * d
    assert denoiser > layers * per_layer
    assert task.flops_per_example() > 3 * 2 * 60 * layers * per_layer * 0.9


def test_runlocal_and_option_validation():
    small = configlib.load_config(CONFIG + ":size=T,runlocal")
    full = configlib.load_config(CONFIG + ":size=T")
    assert small.train.batch_size < full.train.batch_size and small.train.steps < full.train.steps
    with pytest.raises(ValueError, match="XS, S, M, L"):
        configlib.load_config(CONFIG + ":size=XXL")
    with pytest.raises(ValueError, match="allowed: size, data, runlocal"):
        configlib.load_config(CONFIG + ":sise=S")
    with pytest.raises(ValueError, match="0 < data <= 1"):
        configlib.load_config(CONFIG + ":data=1.5")
    with pytest.raises(ValueError, match="text='t5'; choose one of tower, file, scratch"):
        configlib.load_config(CONFIG + ":text=t5")
    # The default conditions on the frozen tower: embeddings as wide as that tower's text side.
    tower = configlib.load_config(full.model.text_tower_config)
    assert full.model.text == "tower" and tower.family == "text_tower"
    assert full.model.text_embed_dim == tower.model.text_d_model


def test_flops_grow_with_size():
    flops = [DiffusionTask(configlib.load_config(f"{CONFIG}:size={s}")).flops_per_example() for s in ("XS", "S", "M", "L")]
    assert flops == sorted(flops) and flops[0] > 1e9
