import numpy as np

from handx_jax.hand import geometry, skeleton


def test_chains_cover_every_joint_once():
    joints = sorted({j for chain in skeleton.CHAINS.values() for j in chain[1:]})
    assert joints == list(range(1, skeleton.NUM_JOINTS))
    assert len(skeleton.BONES) == 20
    assert skeleton.FINGERTIPS == (16, 17, 18, 19, 20)
    assert len(skeleton.INTERIOR_JOINTS) == 15


def test_palm_points_lie_in_palm_triangles():
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(3, 21, 3))
    pts = geometry.palm_points(joints)
    assert pts.shape == (3, 100, 3)
    # Barycentric weights are convex, so each point lies in the hull of its triangle's corners.
    assert np.allclose(geometry.PALM_BARYCENTRIC.sum(1), 1.0)
    assert (geometry.PALM_BARYCENTRIC >= 0).all()
    assert len(np.unique(geometry.PALM_BARYCENTRIC.round(6), axis=0)) == 25


def test_canonicalize_puts_right_wrist_on_plus_x():
    rng = np.random.default_rng(1)
    motion = rng.normal(size=(5, 2, 21, 3))
    out = geometry.canonicalize(motion)
    left, right = out[0, 0, 0], out[0, 1, 0]
    assert right[0] > left[0]
    assert abs(right[1] - left[1]) < 1e-9
    assert np.allclose(0.5 * (left[:2] + right[:2]), 0.0)
    # Distances are preserved.
    d0 = np.linalg.norm(motion[:, 0, 5] - motion[:, 1, 7], axis=-1)
    d1 = np.linalg.norm(out[:, 0, 5] - out[:, 1, 7], axis=-1)
    assert np.allclose(d0, d1)
