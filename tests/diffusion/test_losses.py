"""Masked representation / velocity / acceleration losses."""

import jax.numpy as jnp
import numpy as np

from handx_jax.diffusion.losses import diffusion_losses


def test_terms_on_known_inputs():
    t = jnp.arange(6, dtype=jnp.float32)
    target = jnp.stack([t, 2 * t], axis=-1)[None]  # (1, 6, 2)
    mask = jnp.ones((1, 6))
    # Constant offset: rep error only.
    total, terms = diffusion_losses(target + 0.5, target, mask)
    np.testing.assert_allclose(terms["loss_rep"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(terms["loss_vel"], 0.0, atol=1e-7)
    np.testing.assert_allclose(terms["loss_acc"], 0.0, atol=1e-7)
    np.testing.assert_allclose(total, 0.5 * 0.25, rtol=1e-6)
    # Linear drift of 0.1 per frame: velocity error 0.1, no acceleration error.
    _, terms = diffusion_losses(target + 0.1 * t[None, :, None], target, mask)
    np.testing.assert_allclose(terms["loss_vel"], 0.01, rtol=1e-5)
    np.testing.assert_allclose(terms["loss_acc"], 0.0, atol=1e-7)
    # Quadratic: constant second difference 2 * 0.05 = 0.1.
    _, terms = diffusion_losses(target + 0.05 * (t**2)[None, :, None], target, mask)
    np.testing.assert_allclose(terms["loss_acc"], 0.01, rtol=1e-5)


def test_masked_frames_are_ignored_and_weights_apply():
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.normal(size=(2, 8, 3)), jnp.float32)
    pred = target + 0.3
    mask = jnp.ones((2, 8)).at[1, 5:].set(0.0)
    garbage = pred.at[1, 5:].set(100.0)
    t1, a = diffusion_losses(pred, target, mask)
    t2, b = diffusion_losses(garbage, target, mask)
    np.testing.assert_allclose(t1, t2, rtol=1e-6)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)
    total, _ = diffusion_losses(pred, target, mask, {"rep": 1.0, "vel": 0.0, "acc": 0.0})
    np.testing.assert_allclose(total, 0.09, rtol=1e-5)
