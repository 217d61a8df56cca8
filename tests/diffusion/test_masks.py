"""Conditioning-mask builders: weights in the right places, with the documented decay."""

import numpy as np
import pytest

from handx_jax.diffusion import masks


def test_frame_weights_decay_from_peak_to_floor():
    m = np.zeros(20, bool)
    m[0] = True
    w = masks.frame_weights(m)
    assert w[0] == 1.0
    np.testing.assert_allclose(w[1:6], np.linspace(0.85, 0.10, 5), atol=1e-6)
    assert np.all(w[6:] == 0)
    assert masks.frame_weights(m, hard=False)[0] == pytest.approx(0.85)


def test_inbetween_and_keyframes():
    w = masks.inbetween_weight(2, 30, 168)
    assert w.shape == (2, 30, 168)
    assert np.all(w[:, :5] == 1) and np.all(w[:, -5:] == 1) and np.all(w[:, 15] == 0)
    k = masks.keyframe_weight(1, 30, 168, [10])
    assert np.all(k[0, 10] == 1) and k[0, 11, 0] == pytest.approx(0.85) and k[0, 0, 0] == 0
    with pytest.raises(ValueError, match="outside 0..29"):
        masks.keyframe_weight(1, 30, 168, [30])


def test_hand_and_wrist_layouts():
    rep = "joint_pos_w_scalar_rot"
    w = masks.hand_reaction_weight(1, 4, rep, given_hand=1)
    layout = masks.feature_layout(rep)
    assert np.all(w[0, :, layout[1].ravel()] == 1) and np.all(w[0, :, layout[0].ravel()] == 0)
    assert w[0, 0].sum() == 84
    wr = masks.wrist_trajectory_weight(1, 4, rep)
    assert wr[0, 0].sum() == 6  # 2 hands x xyz
    assert np.all(wr[0, :, layout[:, 0, 3]] == 0)  # wrist rotation scalar not constrained
    assert masks.wrist_trajectory_weight(1, 4, "joint_pos")[0, 0].sum() == 6


def test_reference_constraint_values_and_modes():
    from handx_jax.data import representations
    from handx_jax.data.normalization import Stats
    from handx_jax.diffusion import conditioning

    rep = "joint_pos_w_scalar_rot"
    rng = np.random.default_rng(0)
    ref = (0.1 * rng.normal(size=(12, 2, 21, 3))).astype(np.float32)
    stats = Stats(mean=rng.normal(size=168).astype(np.float32), std=(1 + rng.random(168)).astype(np.float32))
    values, weight = conditioning.reference_constraint(ref, "reaction_right", rep, stats, batch=3)
    assert values.shape == weight.shape == (3, 12, 168)
    expected = (np.asarray(representations.to_features(ref, rep)) - stats.mean) / stats.std
    np.testing.assert_allclose(values[2], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(weight, masks.hand_reaction_weight(3, 12, rep, given_hand=1))
    _, w = conditioning.reference_constraint(ref, "keyframes", rep, stats, batch=1, keyframes=[4])
    np.testing.assert_array_equal(w, masks.keyframe_weight(1, 12, 168, [4]))
    with pytest.raises(ValueError, match="keyframes are given with modes 'keyframes' and 'contact' and only then"):
        conditioning.reference_constraint(ref, "inbetween", rep, stats, batch=1, keyframes=[4])
    with pytest.raises(ValueError, match=r"must be \(T, 2, 21, 3\)"):
        conditioning.reference_constraint(ref[:, :1], "wrist", rep, stats, batch=1)
    bad = ref.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        conditioning.reference_constraint(bad, "wrist", rep, stats, batch=1)


def test_contact_joints_and_keyframe_weight():
    from handx_jax.data.normalization import Stats
    from handx_jax.diffusion import conditioning
    from handx_jax.hand import geometry

    rng = np.random.default_rng(1)
    ref = np.zeros((10, 2, 21, 3), np.float32)
    ref[:, 0] = 0.02 * np.arange(21)[:, None] * np.array([1.0, 0.4, 0.1])  # a spread-out left hand
    ref[:, 1] = ref[:, 0] + np.array([0.6, 0.0, 0.0])  # the right hand 60 cm away
    ref += 0.001 * rng.normal(size=ref.shape).astype(np.float32)
    with pytest.raises(ValueError, match="no contact at frame 4"):
        conditioning.contact_joints(ref, 4)
    ref[4, 0, 17] = ref[4, 0, 16] + 0.005  # left index tip on the left thumb tip
    assert conditioning.contact_joints(ref, 4) == [(0, 16), (0, 17)]
    ref[6, 1, 18] = geometry.palm_points(ref[6, 0])[40]  # right middle tip on the left palm
    assert conditioning.contact_joints(ref, 6) == sorted({(1, 18)} | {(0, int(c)) for c in geometry.PALM_CORNERS})
    rep = "joint_pos_w_scalar_rot"
    stats = Stats(mean=np.zeros(168, np.float32), std=np.ones(168, np.float32))
    _, w = conditioning.reference_constraint(ref, "contact", rep, stats, batch=2, keyframes=[4])
    layout = masks.feature_layout(rep)
    assert w.shape == (2, 10, 168)
    assert np.all(w[:, 4, layout[0, 16, :3]] == 1) and np.all(w[:, 4, layout[0, 17, :3]] == 1)
    assert w[0, 4].sum() == 6 and w[0, 4, layout[0, 16, 3]] == 0  # positions only, two joints
    col = layout[0, 16, 0]
    assert w[0, 3, col] == pytest.approx(0.85) and w[0, 5, col] == pytest.approx(0.85)  # ramps both ways
    others = np.ones(168, bool)
    others[np.concatenate([layout[0, 16, :3], layout[0, 17, :3]])] = False
    assert np.all(w[:, :, others] == 0)
