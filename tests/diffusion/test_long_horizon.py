"""Long-horizon building blocks: the prefix constraint and its values."""

import numpy as np
import pytest

from handx_jax.diffusion import long_horizon, masks


def test_prefix_weight_ramp():
    w = masks.prefix_weight(2, 20, 3, context=4)
    assert w.shape == (2, 20, 3) and (w[:, :4] == 1).all() and (w[:, 9:] == 0).all()
    np.testing.assert_allclose(w[0, 4:9, 0], np.linspace(0.85, 0.10, 5), atol=1e-6)
    with pytest.raises(ValueError, match="context must be between 1 and 19"):
        masks.prefix_weight(1, 20, 3, context=20)


def test_prefix_values_copy_then_carry_velocity():
    rng = np.random.default_rng(0)
    previous = rng.normal(size=(3, 12, 5)).astype(np.float32)
    values = np.asarray(long_horizon.prefix_values(previous, 4))
    assert values.shape == previous.shape
    np.testing.assert_array_equal(values[:, :4], previous[:, -4:])
    velocity = previous[:, -1] - previous[:, -2]
    for i in range(1, 12 - 4 + 1):
        np.testing.assert_allclose(values[:, 3 + i], previous[:, -1] + i * velocity, rtol=1e-5, atol=1e-5)


def test_total_frames():
    assert long_horizon.total_frames(1, 60, 10) == 60
    assert long_horizon.total_frames(4, 60, 10) == 60 + 3 * 50
