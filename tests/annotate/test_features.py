"""Features measured on hand-made clips whose true angles and contacts are known."""

import numpy as np
import pytest

from handx_jax.annotate import events as E
from handx_jax.annotate import features as F
from handx_jax.hand import geometry
from tests.annotate import handmade as H


def _rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_flexion_recovers_true_angles_both_hands_any_pose():
    rng = np.random.default_rng(0)
    flex = rng.uniform(-0.5, 1.4, size=(40, 2, 5, 3))
    flex[..., 0, :] = rng.uniform(0.0, 0.9, size=(40, 2, 3))
    wrist = np.zeros((40, 2, 3))
    wrist[:, 0, 0], wrist[:, 1, 0] = -0.15, 0.15
    motion = H.clip(flex, wrist).astype(np.float64)
    motion = motion @ _rotation(rng).T + 0.3  # a rigid move of the whole scene changes nothing
    got = F.extract_features(motion)["flexion"][0]
    want = np.where(np.abs(flex) < geometry.DEAD_ZONE_RAD, 0.0, flex)
    np.testing.assert_allclose(got[..., 1:, :], want[..., 1:, :], atol=2e-4)
    # thumb MCP and IP: signed / unsigned 3-D angles (the hand-made thumb bends in-plane)
    np.testing.assert_allclose(got[..., 0, 1:], want[..., 0, 1:], atol=2e-4)
    assert (got[..., 1:, :] < -0.3).any(), "hyperextension must be measurable"


def test_dead_zone_zeroes_small_angles():
    flex = np.full((3, 2, 5, 3), np.deg2rad(10.0))
    wrist = np.zeros((3, 2, 3))
    wrist[:, 1, 0] = 0.3
    got = F.extract_features(H.clip(flex, wrist))["flexion"]
    assert np.all(got[..., 1:, :] == 0.0)


def test_spacing_follows_abduction():
    spread = np.zeros((4, 2, 4))
    spread[:, :, 0] = np.deg2rad([0.0, 10.0, 20.0, 30.0])[:, None]  # index rotates away
    flex = np.zeros((4, 2, 5, 3))
    wrist = np.zeros((4, 2, 3))
    wrist[:, 1, 0] = 0.3
    got = F.extract_features(H.clip(flex, wrist, spread))["spacing"][0]  # (T, 2, 3)
    want = np.broadcast_to(np.deg2rad([0.0, 10.0, 20.0, 30.0])[:, None], (4, 2))
    np.testing.assert_allclose(got[:, :, 0], want, atol=1e-4)
    np.testing.assert_allclose(got[:, :, 1:], 0.0, atol=1e-3)


def test_distances_match_brute_force_and_batching():
    rng = np.random.default_rng(1)
    motion = np.stack([H.random_clip(rng) for _ in range(5)])
    feats = F.extract_features(motion, chunk=2)
    single = F.extract_features(motion[3])
    for key in F.FEATURE_KEYS:
        np.testing.assert_allclose(feats[key][3], single[key][0], atol=1e-6)
    tips = motion[..., list(geometry.TIPS), :]
    palm = geometry.palm_points(motion)
    d = np.linalg.norm(tips[..., 0, :, None, :] - palm[..., 1, None, :, :], axis=-1)
    want = np.sort(d, axis=-1)[..., :5].mean(axis=-1)  # left tips to the right palm
    np.testing.assert_allclose(feats["tip_palm_dist"][..., 0, :], want, atol=1e-5)
    pp = np.linalg.norm(palm[..., 0, :, None, :] - palm[..., 1, None, :, :], axis=-1)
    want_pp = _nearest_30(pp)
    np.testing.assert_allclose(feats["palm_palm_dist"], want_pp, atol=1e-5)
    inter = np.linalg.norm(tips[:, :, 0, :, None] - tips[:, :, 1, None], axis=-1)
    np.testing.assert_allclose(feats["inter_tip_dist"], inter, atol=1e-6)


def _nearest_30(pp):
    """HandX's palm-palm distance from full matrices (..., 100, 100): per left point the
    nearest right point, then the mean of the 30 smallest."""
    return np.sort(pp.min(axis=-1), axis=-1)[..., :30].mean(axis=-1)


@pytest.mark.parametrize("gap", [0.0, 0.01, 0.05, 0.3])
def test_palm_palm_matches_brute_force_when_palms_close_or_far(gap):
    rng = np.random.default_rng(2)
    flex = rng.uniform(0, 1, size=(6, 2, 5, 3))
    wrist = np.zeros((6, 2, 3))
    wrist[:, 1, 0] = 0.08 + gap  # palms side by side ... to far apart
    wrist[:3, 1, 2] = gap  # and stacked
    motion = H.clip(flex, wrist)
    motion[:3, 1] = motion[:3, 0] * np.array([1, 1, -1], np.float32) + [0, 0, gap + 0.01]
    palm = geometry.palm_points(motion.astype(np.float64))
    pp = np.linalg.norm(palm[:, 0, :, None] - palm[:, 1, None], axis=-1)
    corners = motion[:, :, geometry.PALM_CORNERS]
    got = geometry.palm_palm_distance(corners[:, 0], corners[:, 1])
    np.testing.assert_allclose(got, _nearest_30(pp), atol=2e-6)
    # not the mean of the 30 closest pairs of the whole matrix (a different quantity)
    pairs = np.sort(pp.reshape(6, -1), axis=-1)[:, :30].mean(axis=-1)
    assert (got > pairs + 1e-4).any()


def test_intra_contact_distance_and_relative_position():
    motion, _, _ = H.still_clip(frames=10, separation=0.3)
    motion[2:5, 1, 16] = motion[2:5, 1, 18] + np.float32(0.005)  # right thumb on middle tip
    feats = F.extract_features(motion)
    intra = feats["intra_tip_dist"][0]
    np.testing.assert_allclose(intra[2:5, 1, 1], 0.005 * np.sqrt(3), atol=1e-6)
    assert (intra[:2, 1, 1] > 0.02).all() and (intra[:, 0] > 0.02).all()
    assert (feats["palm_rel"][0, :, 0] > 0.25).all()  # right palm to the right
    np.testing.assert_allclose(feats["wrist"][0], motion[:, :, 0])


def test_bad_input_names_the_problem():
    with pytest.raises(F.FeatureError, match="expected motion"):
        F.extract_features(np.zeros((2, 60, 2, 20, 3)))
    bad = np.zeros((2, 5, 2, 21, 3))
    bad[1, 2, 0, 0, 0] = np.nan
    with pytest.raises(F.FeatureError, match=r"clip\(s\) \[1\]"):
        F.extract_features(bad)


def test_palm_palm_is_exact_on_random_poses():
    rng = np.random.default_rng(9)
    frames = 300
    flex = rng.uniform(0, 1.2, size=(frames, 2, 5, 3))
    motion = H.clip(flex, np.zeros((frames, 2, 3))).astype(np.float64)
    for h in range(2):  # every frame its own hand orientations and a 0-15 cm offset
        rot = np.stack([_rotation(rng) for _ in range(frames)])
        motion[:, h] = np.einsum("tij,tkj->tki", rot, motion[:, h])
    motion[:, 1] += rng.uniform(-0.15, 0.15, size=(frames, 1, 3)) + [0.08, 0, 0]
    motion = motion.astype(np.float32)
    corners = motion[:, :, geometry.PALM_CORNERS]
    got = geometry.palm_palm_distance(corners[:, 0], corners[:, 1])
    palm = geometry.palm_points(motion.astype(np.float64))
    want = _nearest_30(np.linalg.norm(palm[:, 0, :, None] - palm[:, 1, None], axis=-1))
    assert (want < 0.04).sum() > 10, "some palms must be close for the test to bite"
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_far_bounds_are_lower_bounds():
    rng = np.random.default_rng(11)
    motion = np.stack([H.random_clip(rng) for _ in range(4)]).astype(np.float64)
    # two clips with the right wrist 3 cm above the left one, two with the hands apart
    motion[:2, :, 1] += motion[:2, :, 0, :1] - motion[:2, :, 1, :1] + [0.0, 0.0, 0.03]
    palm_bound, tip_bound = F.far_bounds(motion)
    palm = geometry.palm_points(motion)
    pp = np.linalg.norm(palm[..., 0, :, None, :] - palm[..., 1, None, :, :], axis=-1)
    assert (palm_bound <= pp.min(axis=(-1, -2)) + 1e-12).all()
    tips = motion[..., list(geometry.TIPS), :]
    for h in range(2):
        d = np.linalg.norm(tips[..., h, :, None, :] - palm[..., 1 - h, None, :, :], axis=-1)
        assert (tip_bound[..., h, :] <= d.min(axis=-1) + 1e-12).all()
    assert (palm_bound > 0.05).any() and (tip_bound < 0.0).any()  # both loose and tight


def test_skipping_far_palm_distances_keeps_the_events():
    """exact=False: signals Far throughout by their bound hold it; every other value is
    the exact one, bit for bit, and the event JSON is the same."""
    rng = np.random.default_rng(12)
    motion = np.stack([H.random_clip(rng) for _ in range(6)])
    # the right wrist 6 cm above the left one in two clips: palm-palm measured there
    motion[:2, :, 1] += motion[:2, :, 0, :1] - motion[:2, :, 1, :1] + np.float32([0, 0, 0.06])
    exact = F.extract_features(motion)
    fast = F.extract_features(motion, exact=False)
    for key in F.FEATURE_KEYS:
        if key not in ("tip_palm_dist", "palm_palm_dist"):
            np.testing.assert_array_equal(fast[key], exact[key])
    for key, edge in (("palm_palm_dist", 0.12), ("tip_palm_dist", 0.035)):
        kept = (fast[key] == exact[key]).all(axis=1)  # per signal: clip (x hand, tip)
        skipped = np.moveaxis(fast[key], 1, -1)[~kept]  # (signals, T) holding the bound
        assert kept.any() and (~kept).any(), key
        assert (skipped >= edge).all()
        assert (skipped <= np.moveaxis(exact[key], 1, -1)[~kept] + 1e-4).all()
    assert E.batch_events(fast) == E.batch_events(exact)
