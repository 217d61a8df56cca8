"""The geometry layer against independent per-frame implementations of HandX's measures."""

import numpy as np
import pytest

from handx_jax.hand import descriptors as D
from handx_jax.hand import geometry as G
from tests.annotate import handx_reference as R


def _random_motion(rng, n=3, t=7):
    """Loosely hand-shaped random joints (n, t, 2, 21, 3): fingers roughly along +y."""
    base = np.zeros((21, 3))
    for f, chain in enumerate(R.CHAIN.values()):
        for k, j in enumerate(chain[1:], start=1):
            base[j] = [0.02 * (f - 2), 0.03 * k + 0.02, 0.0]
    motion = base + rng.normal(0, 0.012, size=(n, t, 2, 21, 3))
    motion[:, :, 1] *= [-1.0, 1.0, 1.0]  # mirror: the right hand
    motion[:, :, 1, :, 0] += 0.2
    return motion


def test_flexion_matches_handx_per_frame_definition():
    rng = np.random.default_rng(0)
    motion = _random_motion(rng)
    got = G.flexion_angles(motion)  # (n, t, 2, 5, 3)
    for i in range(motion.shape[0]):
        for h in range(2):
            ref = R.hand_signals(motion[i, :, h], right=h == 1)["flex"]
            for f, finger in enumerate(R.FINGER_ORDER):
                for k, joint in enumerate(R.CHAIN[finger][1:4]):
                    if joint in R.JOINT_NAME:
                        np.testing.assert_allclose(got[i, :, h, f, k],
                                                   ref[R.JOINT_NAME[joint]], atol=2e-6)
    assert (got != 0).mean() > 0.3 and (got < 0).any() and (got > 0).any()


def test_one_sign_convention_for_bend_and_flexion():
    """The representation's bend angles are the annotation's flexion (no dead zone) at every
    non-thumb joint, on both hands, in numpy and in JAX."""
    import jax.numpy as jnp

    motion = _random_motion(np.random.default_rng(1))
    bend = G.bend_angles(motion)[..., G.CHAIN_ARRAY[:, 1:4]]  # (n, t, 2, 5, 3)
    flex = G.flexion_angles(motion, dead_zone=False)
    np.testing.assert_allclose(bend[..., 1:, :], flex[..., 1:, :], atol=2e-6)
    np.testing.assert_allclose(np.asarray(G.bend_angles(jnp.asarray(motion, jnp.float32))),
                               G.bend_angles(motion), atol=1e-5)


def test_spacing_and_tip_distances_match_loops():
    motion = _random_motion(np.random.default_rng(2))
    spacing = G.spacing_angles(motion)
    intra = G.intra_tip_distances(motion)
    inter = G.inter_tip_distances(motion)
    for i in range(motion.shape[0]):
        for h in range(2):
            ref = R.hand_signals(motion[i, :, h], right=h == 1)
            np.testing.assert_allclose(spacing[i, :, h], np.stack(list(ref["spacing"].values()),
                                                                  -1), atol=1e-9)
            np.testing.assert_allclose(intra[i, :, h], np.stack(list(ref["tips"].values()), -1),
                                       atol=1e-12)
        for a, ta in enumerate(R.TIPS.values()):
            for b, tb in enumerate(R.TIPS.values()):
                np.testing.assert_allclose(inter[i, :, a, b], np.linalg.norm(
                    motion[i, :, 0, ta] - motion[i, :, 1, tb], axis=-1), atol=1e-12)


@pytest.mark.parametrize("nearest", [1, 5])
def test_tip_to_other_palm_matches_brute_force(nearest):
    motion = _random_motion(np.random.default_rng(3))
    motion[:, :, 1, 17] = G.palm_centres(motion[:, :, 0]) + [0.0, 0.0, 0.01]  # a tip on it
    got = G.tip_to_other_palm(motion, nearest)
    for h in range(2):
        palm = R._palm(motion[:, :, 1 - h].reshape(-1, 21, 3), G.PALM_BARYCENTRIC)
        for f, tip in enumerate(R.TIPS.values()):
            d = np.linalg.norm(motion[:, :, h, tip].reshape(-1, 1, 3) - palm, axis=-1)
            want = np.sort(d, axis=1)[:, :nearest].mean(axis=1)
            np.testing.assert_allclose(got[:, :, h, f].ravel(), want, atol=1e-9)
    assert (got < 0.025).any()


def test_bone_lengths_and_palm_centres():
    motion = _random_motion(np.random.default_rng(4))
    lengths = G.bone_lengths(motion)
    for b, (p, c) in enumerate(((p, c) for p, c in zip(G.BONE_PARENTS, G.BONE_CHILDREN))):
        np.testing.assert_allclose(lengths[..., b], np.linalg.norm(motion[..., c, :] -
                                                                   motion[..., p, :], axis=-1))
    np.testing.assert_allclose(G.palm_centres(motion),
                               G.palm_points(motion).mean(axis=-2), atol=1e-12)


def test_states_speeds_and_finger_state():
    assert D.state_index(np.pi / 6, D.FLEX_EDGES) == 2  # an edge belongs to the band above
    assert D.state_index(np.nextafter(np.pi / 6, 0), D.FLEX_EDGES) == 1
    assert [D.speed_label(v, D.FLEX_SPEED) for v in (0.1, -0.2, 1.3)] == ["Slow", "Medium",
                                                                          "Fast"]
    rng = np.random.default_rng(5)
    angles = rng.uniform(-0.6, 1.6, size=(200, 3))
    got = D.finger_state(angles)
    for row, state in zip(angles, got):
        deg = np.degrees(row)
        want = 0 if deg[0] < -20 else (1 if deg.max() < 30 else 2 if deg.max() < 60 else 3)
        assert state == want
