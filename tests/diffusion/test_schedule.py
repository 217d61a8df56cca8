"""Cosine schedule and respacing."""

import numpy as np
import pytest

from handx_jax.diffusion import schedule as sch


def test_cosine_alpha_bar_monotone_with_endpoints():
    s = sch.make_schedule(1000, "cosine")
    ab = s.alpha_bar
    assert s.num_steps == 1000
    assert np.all(np.diff(ab) < 0)
    assert 0.999 < ab[0] < 1.0
    assert ab[-1] < 1e-4
    assert np.all((s.betas > 0) & (s.betas <= 0.999))
    np.testing.assert_allclose(np.cumprod(1 - s.betas), ab, rtol=1e-10)
    # Nichol & Dhariwal: alpha_bar(T/2) of the cosine schedule is close to 1/2.
    assert 0.45 < ab[499] < 0.55


def test_respacing_keeps_marginals_and_ends():
    base = sch.make_schedule(1000)
    r = sch.respace(base, 50)
    assert r.num_steps == 50
    assert r.timesteps[0] == 0 and r.timesteps[-1] == 999
    np.testing.assert_allclose(r.alpha_bar, base.alpha_bar[r.timesteps])
    np.testing.assert_allclose(np.cumprod(1 - r.betas), r.alpha_bar, rtol=1e-10)
    assert np.all(r.posterior_variance >= 0) and r.posterior_variance[0] == 0
    with pytest.raises(ValueError, match="1..1000"):
        sch.respace(base, 0)
    with pytest.raises(ValueError, match="cosine or linear"):
        sch.make_schedule(10, "quadratic")


def test_q_sample_matches_formula():
    import jax.numpy as jnp

    base = sch.make_schedule(100)
    x0 = jnp.ones((2, 3, 4))
    noise = jnp.full((2, 3, 4), 2.0)
    t = jnp.array([0, 99])
    out = np.asarray(sch.q_sample(jnp.asarray(base.alpha_bar, jnp.float32), x0, t, noise))
    for i, ti in enumerate([0, 99]):
        ab = base.alpha_bar[ti]
        np.testing.assert_allclose(out[i], np.sqrt(ab) + 2 * np.sqrt(1 - ab), rtol=1e-5)
