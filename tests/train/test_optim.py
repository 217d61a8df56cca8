"""Learning-rate schedule, gradient clipping, weight-decay mask and EMA."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from handx_jax.train import optim


def _cfg(**kw):
    base = dict(steps=110, lr=1e-3, warmup_steps=10, weight_decay=0.1, grad_clip=1.0)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_warmup_then_cosine():
    s = optim.make_schedule(_cfg())
    assert float(s(0)) == 0.0
    np.testing.assert_allclose(float(s(5)), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(s(10)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(s(60)), 5e-4, rtol=1e-5)   # half way through the cosine
    np.testing.assert_allclose(float(s(110)), 0.0, atol=1e-9)
    s_floor = optim.make_schedule(_cfg(min_lr_ratio=0.1))
    np.testing.assert_allclose(float(s_floor(110)), 1e-4, rtol=1e-5)


def test_warmup_fraction_scales_with_the_run_and_the_cosine_ends_with_it():
    """A budget-derived run of any length warms up over the same fraction and reaches the
    end of its cosine at its own last step."""
    for steps in (40, 400, 4000):
        cfg = _cfg(steps=steps, warmup_steps=7, warmup_fraction=0.05)
        warm = optim.warmup_steps(cfg)
        assert warm == round(0.05 * steps)
        s = optim.make_schedule(cfg)
        np.testing.assert_allclose(float(s(warm)), 1e-3, rtol=1e-6)
        np.testing.assert_allclose(float(s(steps)), 0.0, atol=1e-9)
        assert float(s(steps - 1)) < 1e-3 * 1e-2
    assert optim.warmup_steps(_cfg(warmup_fraction=0.0)) == 10  # falls back to warmup_steps
    import pytest

    with pytest.raises(ValueError, match="warmup_fraction"):
        optim.warmup_steps(_cfg(warmup_fraction=1.5))


def test_clipping_bounds_the_update_of_a_huge_gradient():
    tx, _ = optim.make_optimizer(_cfg(warmup_steps=0, weight_decay=0.0, grad_clip=1.0))
    params = {"w": jnp.ones((3, 3))}
    grads = {"w": jnp.full((3, 3), 1e6)}
    clip = optax.clip_by_global_norm(1.0)
    clipped, _ = clip.update(grads, clip.init(params))
    np.testing.assert_allclose(float(optax.tree.norm(clipped)), 1.0, rtol=1e-5)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.all(np.isfinite(np.asarray(updates["w"])))
    # first Adam step moves every weight by ~lr whatever the gradient's scale
    np.testing.assert_allclose(np.abs(np.asarray(updates["w"])), 1e-3, rtol=1e-3)


def test_weight_decay_only_on_matrices():
    mask = optim.decay_mask({"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,)), "scale": jnp.ones(())})
    assert mask == {"kernel": True, "bias": False, "scale": False}
    tx, _ = optim.make_optimizer(_cfg(warmup_steps=0, weight_decay=0.5, grad_clip=0.0))
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zero = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(zero, tx.init(params), params)
    assert np.all(np.asarray(updates["kernel"]) < 0)   # decayed towards 0
    assert np.all(np.asarray(updates["bias"]) == 0)


def test_ema_update():
    ema = {"w": jnp.zeros(3)}
    out = optim.ema_update(ema, {"w": jnp.ones(3)}, 0.9)
    np.testing.assert_allclose(np.asarray(out["w"]), 0.1, rtol=1e-6)
    assert out["w"].dtype == jnp.float32
