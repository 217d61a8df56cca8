"""Mixed precision (`model.dtype = "bfloat16"`): float32 parameters and optimizer, bfloat16
compute, float32 loss; a short bf16 run's loss curve stays close to float32's."""

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax import configlib
from handx_jax.train import loop

STEPS = 40
# Largest relative gap |bf16 - f32| / f32 allowed at any step of the curve. bfloat16 keeps
# 8 significant bits (relative rounding 2^-9 ~ 0.2 %); per-step gaps grow as the runs drift
# apart. Measured when written: at most 0.032 % over these 40 steps (mean 0.012 %); the
# tolerance leaves a 15x margin for other XLA versions and CPUs.
TOLERANCE = 0.005


def _losses(dtype: str, initial=None) -> tuple[list[float], object, str]:
    """Loss per step of STEPS steps on one fixed batch; `initial` (a float32 run's initial
    state: parameters do not depend on the compute dtype) saves a second init compile."""
    config = configlib.load_config("configs/diffusion.py:size=T,runlocal")
    config.model.dtype = dtype
    config.train.steps = STEPS
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 1, 1
    task = loop.load_task(config)
    rng = np.random.default_rng(0)
    batch = {k: (np.ones_like(v) if k == "mask" else rng.standard_normal(v.shape).astype(v.dtype))
             for k, v in task.dummy_batch(int(config.train.batch_size)).items()}
    trainer = loop.Trainer(config, "", devices=jax.devices()[:1], example_batch=batch)
    step = trainer.compile()
    state = trainer.init_state() if initial is None else initial
    first = jax.tree_util.tree_map(jnp.copy, state)  # the step donates its input
    losses = []
    for i in range(STEPS):
        key = jax.device_put(jax.random.fold_in(jax.random.PRNGKey(1), i), trainer.replicated)
        state, metrics = step(state, trainer.example, key)
        losses.append(metrics["loss"])
    with trainer.context():
        jaxpr = str(jax.make_jaxpr(task.loss)(state.params, trainer.example, key))
    return [float(x) for x in jax.device_get(losses)], (first, state), jaxpr


def test_bfloat16_loss_curve_tracks_float32():
    f32, (initial, _), f32_jaxpr = _losses("float32")
    bf16, (_, state), bf16_jaxpr = _losses("bfloat16", initial)
    # The matmuls run in bf16 (none in float32 mode), the loss comes out float32.
    assert "bf16[" in bf16_jaxpr and "bf16[" not in f32_jaxpr
    # Parameters, optimizer moments and EMA stay float32 under bf16 compute.
    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state, state.ema_params))
    assert {x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
    gaps = np.abs(np.array(bf16) - np.array(f32)) / np.array(f32)
    assert gaps.max() < TOLERANCE, gaps
    assert bf16 != f32  # the bf16 run did compute in bf16
    assert np.mean(f32[-5:]) < 0.8 * np.mean(f32[:5]) and np.mean(bf16[-5:]) < 0.8 * np.mean(bf16[:5])
