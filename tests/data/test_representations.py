"""Representations: round trips, dimensions, and the meaning of the rotation scalar."""
import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax.data import representations as rep
from handx_jax.hand import geometry, skeleton

from tests.data._clips import plausible_clips, rest_hand


def _batch(seed=0):
    clips = plausible_clips(3, seed=seed, lengths=(12,))
    return np.stack([c["motion"] for c in clips.values()])  # (3, 12, 2, 21, 3)


@pytest.mark.parametrize("name", rep.NAMES)
def test_round_trip_gives_centred_joints(name):
    motion = _batch()
    features = rep.to_features(motion, name)
    assert features.shape == (3, 12, rep.FEATURE_DIMS[name]) and features.dtype == np.float32
    offset = rep.centre_offset(motion)
    np.testing.assert_allclose(rep.to_joints(features, name), motion - offset, rtol=0, atol=1e-7)
    np.testing.assert_allclose(rep.to_joints(features, name, offset=offset), motion,
                               rtol=0, atol=1e-6)
    # Centred: the mean wrist midpoint of the represented clip is the origin.
    joints = rep.to_joints(features, name)
    mid = 0.5 * (joints[:, :, 0, 0] + joints[:, :, 1, 0])
    np.testing.assert_allclose(mid.mean(axis=1), 0.0, atol=1e-7)


def test_single_clip_and_jax_agree_with_batched_numpy():
    motion = _batch(1)
    name = "joint_pos_w_scalar_rot"
    batched = rep.to_features(motion, name)
    np.testing.assert_array_equal(rep.to_features(motion[1], name), batched[1])
    via_jax = np.asarray(rep.to_features(jnp.asarray(motion), name))
    np.testing.assert_allclose(via_jax, batched, atol=2e-6)
    np.testing.assert_allclose(np.asarray(rep.to_joints(jnp.asarray(batched), name)),
                               rep.to_joints(batched, name), atol=0)


def _bent_left_hand(angle):
    """Rest left hand with the middle finger bent by `angle` at MCP, PIP and DIP towards -z.

    In the rest hand (index on +y of the middle finger) the palm faces local +z, so positive
    `angle` bends the finger backwards (extension) and negative `angle` curls it (flexion).
    """
    hand = rest_hand()
    chain = skeleton.CHAINS["middle"]
    direction_angle = 0.0
    for parent, joint in zip(chain[1:-1], chain[2:]):
        direction_angle += angle
        length = np.linalg.norm(rest_hand()[joint] - rest_hand()[parent])
        hand[joint] = hand[parent] + length * np.array(
            [np.cos(direction_angle), 0.0, -np.sin(direction_angle)])
    return hand


def test_rotation_scalar_measures_bend_and_mirrors():
    angle = np.deg2rad(25.0)
    left = _bent_left_hand(angle)
    right = left * np.array([-1.0, 1.0, 1.0])  # mirror image: the same bend on the right hand
    motion = np.stack([left, right])[None, None].astype(np.float64)  # (1, 1, 2, 21, 3)
    scalars = rep.rotation_scalars(motion)[0, 0]
    middle = skeleton.CHAINS["middle"]
    # _bent_left_hand bends away from the palm: an extension, negative in the one sign
    # convention (flexion positive on both hands).
    np.testing.assert_allclose(scalars[0, list(middle[1:-1])], -angle, atol=1e-9)
    np.testing.assert_allclose(scalars[1], scalars[0], atol=1e-9)  # sign flipped for right
    tips_and_wrist = [0, *skeleton.FINGERTIPS]
    assert np.all(scalars[:, tips_and_wrist] == 0.0)
    # The flat fingers of the rest hand have (numerically) no bend.
    others = [j for f in ("index", "ring", "pinky") for j in skeleton.CHAINS[f][1:-1]]
    np.testing.assert_allclose(scalars[:, others], 0.0, atol=1e-9)
    # Curling towards the palm (flexion) is positive, as in the annotation's flexion.
    back = rep.rotation_scalars(_bent_left_hand(-angle)[None, None, None])[0, 0, 0]
    np.testing.assert_allclose(back[list(middle[1:-1])], angle, atol=1e-9)
    bent = _bent_left_hand(-angle)
    both = np.stack([bent, bent * np.array([-1.0, 1.0, 1.0])])[None]  # (1, 2, 21, 3)
    flexion = geometry.flexion_angles(both, dead_zone=False)  # (1, 2, 5, 3)
    np.testing.assert_allclose(flexion[0, :, 2], angle, atol=1e-6)  # middle, both hands


def test_scalar_rotation_features_hold_angles_in_fourth_channel():
    motion = _batch(2)
    features = rep.to_features(motion, "joint_pos_w_scalar_rot").reshape(3, 12, 2, 21, 4)
    centred = motion - rep.centre_offset(motion)
    np.testing.assert_allclose(features[..., 3], rep.rotation_scalars(centred), atol=1e-6)
    assert np.abs(features[..., 3]).max() > 0.05  # jittered hands do bend


def test_mask_restricts_centring_to_valid_frames():
    motion = _batch(3)
    padded = np.concatenate([motion, np.full_like(motion[:, :4], 100.0)], axis=1)
    mask = np.concatenate([np.ones((3, 12)), np.zeros((3, 4))], axis=1)
    features = rep.to_features(padded, "joint_pos", mask_bt=mask)
    np.testing.assert_allclose(features[:, :12], rep.to_features(motion, "joint_pos"), atol=1e-6)


def test_unknown_name_and_bad_shapes_are_clear():
    with pytest.raises(ValueError, match="unknown representation 'rot6d'"):
        rep.to_features(_batch(), "rot6d")
    with pytest.raises(ValueError, match="joint_pos has 126 features"):
        rep.to_joints(np.zeros((2, 5, 100)), "joint_pos")
    with pytest.raises(ValueError, match=r"\(B, T, 2, 21, 3\)"):
        rep.to_features(np.zeros((2, 5, 21, 3, 1)), "joint_pos")
