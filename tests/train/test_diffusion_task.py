"""The trainer with the real DiffusionTask (size T): golden parameter shardings on
data=2, fsdp=2, tensor=2 (default tower conditioning, and a scratch text encoder), and
sharded vs single-device losses over 5 steps."""

import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from handx_jax import configlib
from handx_jax.train import loop, optim, sharding, state

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "diffusion.py") + ":size=T"


def _layer(prefix):
    """One encoder layer: the contract's rules applied to the layer's boxed names
    (qkv (embed, -, heads, kv), out (heads, kv, embed), mlp wi (embed, mlp), wo (mlp, embed))."""
    return {
        f"{prefix}/attention/out_bias": P("fsdp"),
        f"{prefix}/attention/out_kernel": P("tensor", None, "fsdp"),
        f"{prefix}/attention/qkv_bias": P(None, "tensor"),
        f"{prefix}/attention/qkv_kernel": P("fsdp", None, "tensor"),
        f"{prefix}/mlp/wi/bias": P("tensor"), f"{prefix}/mlp/wi/kernel": P("fsdp", "tensor"),
        f"{prefix}/mlp/wo/bias": P("fsdp"), f"{prefix}/mlp/wo/kernel": P("tensor", "fsdp"),
        **{f"{prefix}/{n}/{p}": P("fsdp") for n in ("norm_attention", "norm_mlp") for p in ("bias", "scale")},
    }


DENOISER_T = {
    "cond_projection/bias": P("fsdp"), "cond_projection/kernel": P(None, "fsdp"),
    "encoder/final_norm/bias": P("fsdp"), "encoder/final_norm/scale": P("fsdp"),
    **_layer("encoder/layer_0"), **_layer("encoder/layer_1"),
    "input_projection/bias": P("fsdp"), "input_projection/kernel": P(None, "fsdp"),
    "output_projection/bias": P(), "output_projection/kernel": P("fsdp"),
    "time_mlp_in/bias": P("tensor"), "time_mlp_in/kernel": P("fsdp", "tensor"),
    "time_mlp_out/bias": P("fsdp"), "time_mlp_out/kernel": P("tensor", "fsdp"),
}
# Default: per-role projections of the frozen tower's caption embeddings (role, E, embed).
GOLDEN_T = {
    **DENOISER_T,
    "text_encoder/kernel": P(None, None, "fsdp"), "text_encoder/bias": P("fsdp"),
}
GOLDEN_T_SCRATCH = {
    **DENOISER_T,
    "text_encoder/cls": P(None, "fsdp"),
    "text_encoder/encoder/final_norm/bias": P("fsdp"), "text_encoder/encoder/final_norm/scale": P("fsdp"),
    **_layer("text_encoder/encoder/layer_0"),
    "text_encoder/position_embedding": P(None, "fsdp"),
    "text_encoder/token_embedding": P("tensor", "fsdp"),
}


def _stand_in_batch(task, b=8):
    rng = np.random.default_rng(0)
    batch = task.dummy_batch(b)
    batch["motion"] = rng.standard_normal(batch["motion"].shape).astype(np.float32)
    if "text_embedding" in batch:
        batch["text_embedding"] = rng.standard_normal(batch["text_embedding"].shape).astype(np.float32)
    for k in list(batch):
        if k.startswith("tokens_") and not k.endswith("_mask"):
            batch[k] = rng.integers(1, 50, size=batch[k].shape).astype(np.int32)
            batch[k + "_mask"] = np.ones(batch[k].shape, np.float32)
    return batch


@pytest.mark.parametrize("text,golden", [("tower", GOLDEN_T), ("scratch", GOLDEN_T_SCRATCH)])
def test_golden_diffusion_parameter_shardings(text, golden):
    config = configlib.load_config(f"{CONFIG},text={text}")
    task = loop.load_task(config)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    tx, _ = optim.make_optimizer(config.train)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in task.dummy_batch(8).items()}
    _, shardings = state.abstract_state(task, tx, jax.random.PRNGKey(0), spec, mesh)
    assert state.param_specs(shardings) == golden


def _five_losses(devices, **mesh):
    config = configlib.load_config(CONFIG)
    config.train.batch_size = 8
    config.mesh.update(mesh)
    task = loop.load_task(config)
    trainer = loop.Trainer(config, "unused", devices=devices, example_batch=_stand_in_batch(task))
    step = trainer.compile()
    st = trainer.init_state()
    losses = []
    for i in range(5):
        key = jax.device_put(jax.random.fold_in(jax.random.PRNGKey(3), i), trainer.replicated)
        st, metrics = step(st, trainer.example, key)
        losses.append(float(metrics["loss"]))
    return np.array(losses)


def test_diffusion_sharded_and_single_device_losses_agree():
    sharded = _five_losses(None, data=2, fsdp=2, tensor=2)
    single = _five_losses(jax.devices()[:1], data=1, fsdp=1, tensor=1)
    np.testing.assert_allclose(sharded, single, rtol=0, atol=1e-5)
    assert len(set(np.round(single, 6))) == 5
