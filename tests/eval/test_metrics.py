"""Each metric against a direct (loop) implementation of its definition and known answers."""

import numpy as np
import pytest
import scipy.linalg

from handx_jax.eval import metrics
from handx_jax.hand import geometry


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- embeddings --


def _r_precision_loops(text, motion, top_k, batch_size, ties="against"):
    hits = np.zeros(top_k)
    rows = 0
    for start in range(0, len(text) - batch_size + 1, batch_size):
        t, m = text[start:start + batch_size], motion[start:start + batch_size]
        for i in range(batch_size):
            dists = np.array([np.sqrt(np.sum((t[i] - m[j]) ** 2)) for j in range(batch_size)])
            if ties == "against":
                position = sum(1 for j in range(batch_size) if j != i and dists[j] <= dists[i])
            else:
                position = sum(1 for j in range(batch_size) if dists[j] < dists[i])
            for k in range(top_k):
                hits[k] += position <= k
            rows += 1
    return hits / rows


def test_r_precision_matches_loops_and_drops_remainder():
    rng = _rng(1)
    text = rng.normal(size=(100, 8))
    motion = text + rng.normal(scale=1.5, size=(100, 8))
    got = metrics.r_precision(text, motion, top_k=3, batch_size=32, ties="against")
    want = _r_precision_loops(text, motion, 3, 32)
    np.testing.assert_allclose(got, want, atol=1e-12)
    for batch in (32, 64):  # no ties in random data: both conventions agree
        np.testing.assert_allclose(metrics.r_precision(text, motion, 3, batch),
                                   _r_precision_loops(text, motion, 3, batch, "sort"), atol=1e-12)
    assert got.shape == (3,)
    assert np.all(np.diff(got) >= 0)
    # The remainder (4 pairs) is dropped: changing it changes nothing.
    motion2 = motion.copy()
    motion2[96:] = 1e3
    np.testing.assert_allclose(metrics.r_precision(text, motion2), got)


def test_r_precision_known_answers():
    rng = _rng(2)
    emb = rng.normal(size=(64, 16))
    np.testing.assert_allclose(metrics.r_precision(emb, emb), [1.0, 1.0, 1.0])
    # Motions matched to the wrong text (cyclic shift within each batch) never rank first.
    shifted = np.concatenate([np.roll(emb[:32], 1, axis=0), np.roll(emb[32:], 1, axis=0)])
    assert metrics.r_precision(emb, shifted)[0] == 0.0
    # Collapsed generations (one embedding for every text) score nothing when ties count
    # against the true match; by sort order (the reference codes) they score by position.
    collapsed = np.zeros_like(emb)
    np.testing.assert_allclose(metrics.r_precision(emb, collapsed, ties="against"), [0, 0, 0])
    order = np.argsort(metrics.pairwise_distances(emb[:32], collapsed[:32]), axis=-1)
    want = [np.mean(np.argmax(order == np.arange(32)[:, None], axis=-1) < k) for k in (1, 2, 3)]
    np.testing.assert_allclose(metrics.r_precision(emb[:32], collapsed[:32]), want)
    with pytest.raises(ValueError, match="fewer than one batch"):
        metrics.r_precision(emb[:10], emb[:10])
    # HandX's code evaluates fewer pairs than a batch as one batch
    shifted10 = np.roll(emb[:10], 1, axis=0)
    np.testing.assert_allclose(metrics.r_precision(emb[:10], shifted10, batch_size=64,
                                                   whole_batch_when_short=True)[0], 0.0)
    np.testing.assert_allclose(metrics.r_precision(emb[:10], emb[:10], batch_size=64,
                                                   whole_batch_when_short=True), [1, 1, 1])


def test_protocols_differ_only_as_documented():
    handx, humanml3d = metrics.get_protocol("handx"), metrics.get_protocol("humanml3d")
    assert (handx.r_precision_batch, humanml3d.r_precision_batch) == (64, 32)
    assert handx.ties == humanml3d.ties == "sort"
    assert (handx.empty_prf, humanml3d.empty_prf) == (0.0, 1.0)
    assert metrics.DEFAULT_PROTOCOL in metrics.PROTOCOLS
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        metrics.get_protocol("kit")


def test_matching_distance():
    rng = _rng(3)
    a, b = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
    want = np.mean([np.sqrt(np.sum((a[i] - b[i]) ** 2)) for i in range(20)])
    assert metrics.matching_distance(a, b) == pytest.approx(want, rel=1e-12)
    assert metrics.matching_distance(a, a) == 0.0


def _fid_scipy(x, y):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_scipy_sqrtm():
    rng = _rng(4)
    x = rng.normal(size=(400, 12))
    y = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
    assert metrics.fid(x, y) == pytest.approx(_fid_scipy(x, y), rel=1e-6)


def test_fid_known_answers():
    rng = _rng(5)
    x = rng.normal(size=(200, 10))
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    # Pure shift of the mean: FID equals the squared shift.
    shift = np.full(10, 0.5)
    assert metrics.fid(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-8)
    # Rank-deficient covariances (fewer samples than dimensions) stay finite and real.
    small = rng.normal(size=(5, 32))
    assert np.isfinite(metrics.fid(small, small + 1.0))


def test_diversity_matches_definition():
    rng = _rng(6)
    emb = rng.normal(size=(500, 7))
    draw = np.random.default_rng(11)
    first = draw.choice(500, 300, replace=False)
    second = draw.choice(500, 300, replace=False)
    want = np.mean([np.linalg.norm(emb[i] - emb[j]) for i, j in zip(first, second)])
    assert metrics.diversity(emb, 300, seed=11) == pytest.approx(want, rel=1e-12)
    assert metrics.diversity(np.ones((400, 3)), 300) == 0.0
    with pytest.raises(ValueError, match="fewer than num_pairs"):
        metrics.diversity(emb[:100], 300)


def test_multimodality_matches_definition():
    rng = _rng(7)
    emb = rng.normal(size=(6, 30, 4))
    draw = np.random.default_rng(3)
    first = draw.choice(30, 10, replace=False)
    second = draw.choice(30, 10, replace=False)
    want = np.mean([np.linalg.norm(emb[t, i] - emb[t, j]) for t in range(6) for i, j in zip(first, second)])
    assert metrics.multimodality(emb, 10, seed=3) == pytest.approx(want, rel=1e-12)
    # Identical generations per text: no multimodality.
    same = np.repeat(rng.normal(size=(6, 1, 4)), 30, axis=1)
    assert metrics.multimodality(same) == 0.0


# ------------------------------------------------------------------ contacts --


def _hands_apart(n, t, rng):
    """Two open hands 30 cm apart with fingertips 3 cm from one another, each hand swinging
    up and down (10 cm, different phases) so contacts depend on timing; a little noise."""
    base = np.zeros((2, 21, 3))
    for h, x0 in ((0, -0.15), (1, 0.15)):
        base[h, :, 0] = x0 + np.linspace(-0.04, 0.04, 21)
        base[h, :, 1] = np.linspace(0.0, 0.12, 21)
        for k, tip in enumerate((16, 17, 18, 19, 20)):
            base[h, tip, 0] = x0 + (k - 2) * 0.03
            base[h, tip, 1] = 0.15
    phase = 2 * np.pi * np.arange(t) / t
    lift = 0.1 * np.stack([np.sin(phase), np.cos(phase)], axis=-1)  # (T, 2)
    motion = np.broadcast_to(base, (n, t, 2, 21, 3)).copy()
    motion[..., 2] += lift[None, :, :, None]
    motion += rng.normal(scale=1e-4, size=motion.shape)
    return motion


def _intra_loops(motion):
    n = motion.shape[0]
    labels = np.zeros((n, 2, 4), bool)
    for i in range(n):
        for h in range(2):
            for k, tip in enumerate((17, 18, 19, 20)):
                for f in range(motion.shape[1]):
                    if np.linalg.norm(motion[i, f, h, 16] - motion[i, f, h, tip]) < 0.02:
                        labels[i, h, k] = True
    return labels


def _inter_loops(motion):
    n = motion.shape[0]
    labels = np.zeros((n, 2, 5), bool)
    for i in range(n):
        for f in range(motion.shape[1]):
            for h in range(2):
                palm = geometry.palm_points(motion[i, f, 1 - h])
                for k, tip in enumerate((16, 17, 18, 19, 20)):
                    d = np.linalg.norm(palm - motion[i, f, h, tip], axis=-1).min()
                    labels[i, h, k] |= d < 0.025  # HandX's evaluation: the closest point
    return labels


def _prf_loops(pred, true):
    tp = fp = fn = 0
    for p, t in zip(pred.ravel(), true.ravel()):
        tp += p and t
        fp += p and not t
        fn += (not p) and t
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _touching_clips(n=12, t=20, seed=0):
    """Clips where, per clip, some thumb-tip pinches and some fingertip touches the other palm
    happen at clip-specific frames."""
    rng = _rng(seed)
    motion = _hands_apart(n, t, rng)
    for i in range(n):
        h = i % 2
        tip = (17, 18, 19, 20)[i % 4]
        f0 = rng.integers(0, t - 4)
        motion[i, f0:f0 + 3, h, 16] = motion[i, f0:f0 + 3, h, tip] + 0.005
        if i % 3:
            g = rng.integers(0, t - 4)
            palm = geometry.palm_points(motion[i, g:g + 2, 1 - h])  # (2, 100, 3)
            motion[i, g:g + 2, h, (16, 17, 18, 19, 20)[i % 5]] = palm[:, 40] + np.array([0, 0, 0.005])
    return motion


def test_contact_labels_match_loops():
    motion = _touching_clips()
    np.testing.assert_array_equal(metrics.intra_contact_labels(motion), _intra_loops(motion))
    np.testing.assert_array_equal(metrics.inter_contact_labels(motion), _inter_loops(motion))
    assert metrics.intra_contact_labels(motion).sum() >= 12
    assert metrics.inter_contact_labels(motion).sum() >= 6


def test_inter_contact_uses_the_closest_palm_point():
    """A fingertip 2.2 cm off the palm's edge point: in contact by HandX's evaluation (closest
    point < 2.5 cm), though the mean of its 5 nearest palm points is farther than 2.5 cm."""
    motion = _hands_apart(1, 4, _rng(5))
    palm = geometry.palm_points(motion[0, :, 1])  # (T, 100, 3)
    centre = palm.mean(axis=1)
    far = np.argmax(np.linalg.norm(palm - centre[:, None], axis=-1), axis=1)  # an edge point
    edge = palm[np.arange(4), far]
    out = (edge - centre) / np.linalg.norm(edge - centre, axis=-1, keepdims=True)
    motion[0, :, 0, 17] = edge + 0.022 * out
    d = np.linalg.norm(palm - motion[0, :, 0, 17][:, None], axis=-1)
    assert (np.sort(d, axis=1)[:, :5].mean(axis=1) > 0.025).all()
    assert np.allclose(d.min(axis=1), metrics.tip_to_palm_distances(motion)[0, :, 0, 1])
    assert metrics.inter_contact_labels(motion)[0, 0, 1]


def test_contact_prf_against_loops_and_known_answers():
    gt = _touching_clips(seed=1)
    for kind in ("intra", "inter"):
        same = metrics.contact_prf(gt, gt, kind)
        assert same["f1"] == 1.0 and same["precision"] == 1.0 and same["recall"] == 1.0
    # A prediction with contacts from other clips: compare with the loop definition.
    pred = _touching_clips(seed=2)
    for kind, loops in (("intra", _intra_loops), ("inter", _inter_loops)):
        got = metrics.contact_prf(pred, gt, kind)
        want = _prf_loops(loops(pred), loops(gt))
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(want, rel=1e-12)
    # Shuffling one hand's timing breaks fingertip-palm contacts that need both hands in place.
    shuffled = gt.copy()
    shuffled[:, :, 1] = gt[:, ::-1, 1]
    shuffled[:, :, 1] = np.roll(shuffled[:, :, 1], 7, axis=1)
    assert metrics.contact_prf(shuffled, gt, "inter")["f1"] < 0.5
    with pytest.raises(ValueError, match="'intra' or 'inter'"):
        metrics.contact_prf(gt, gt, "palm")


def test_prf_empty_conventions():
    none = np.zeros((3, 8), bool)
    assert metrics.prf_from_labels(none, none)["f1"] == 1.0
    some = none.copy()
    some[0, 0] = True
    assert metrics.prf_from_labels(none, some) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 1}
    # HandX's evaluation: tp / (tp + fp + eps) is 0 when nothing is predicted
    handx = metrics.prf_from_labels(none, none, empty=0.0)
    assert (handx["precision"], handx["recall"], handx["f1"]) == (0.0, 0.0, 0.0)
    assert metrics.prf_from_labels(some, some, empty=0.0)["f1"] == 1.0


# ------------------------------------------------------------------- physics --


def test_jitter_matches_definition():
    rng = _rng(8)
    motion = rng.normal(size=(3, 10, 2, 21, 3))
    total, count = 0.0, 0
    for i in range(3):
        for f in range(7):
            jerk = (motion[i, f + 3] - 3 * motion[i, f + 2] + 3 * motion[i, f + 1] - motion[i, f]) * 30 ** 3
            total += np.linalg.norm(jerk, axis=-1).sum()
            count += 42
    assert metrics.jitter(motion) == pytest.approx(total / count, rel=1e-10)
    # A constant-acceleration trajectory has zero jerk.
    t = np.arange(10)[None, :, None, None, None] / 30.0
    parabola = np.broadcast_to(0.5 * 9.8 * t ** 2, (1, 10, 2, 21, 3))
    assert metrics.jitter(parabola) == pytest.approx(0.0, abs=1e-6)


def test_bone_length_deviation_and_mpjpe():
    rng = _rng(9)
    rigid = np.broadcast_to(rng.normal(size=(1, 1, 2, 21, 3)), (2, 8, 2, 21, 3)).copy()
    assert metrics.bone_length_deviation(rigid) == pytest.approx(0.0, abs=1e-12)
    stretched = rigid.copy()
    stretched[:, 4:, 0, 17] += np.array([0.0, 0.0, 1.0])  # index tip moves on half the frames
    lengths = metrics.bone_lengths(stretched)
    want = np.mean(np.abs(lengths - lengths.mean(axis=1, keepdims=True)))
    assert metrics.bone_length_deviation(stretched) == pytest.approx(want)
    assert metrics.bone_length_deviation(stretched) > 0
    offset = rigid + np.array([0.03, 0.04, 0.0])
    assert metrics.mpjpe(offset, rigid) == pytest.approx(0.05)


def test_penetration_depth():
    rng = _rng(10)
    apart = _hands_apart(2, 6, rng)
    assert metrics.penetration_depth(apart) == 0.0
    overlap = apart.copy()
    overlap[:, :3, 1, 5] = overlap[:, :3, 0, 5] + np.array([0.004, 0.0, 0.0])  # 4 mm apart on 3 of 6 frames
    assert metrics.penetration_depth(overlap, radius=0.008) == pytest.approx(0.5 * (0.016 - 0.004), rel=1e-3)


def test_joint_limit_violation_rate():
    rng = _rng(11)
    motion = rng.normal(scale=0.05, size=(2, 5, 2, 21, 3))
    angles = geometry.flexion_angles(motion)
    lo, hi = metrics.JOINT_LIMITS_RAD
    want = np.mean([(a < lo) or (a > hi) for a in angles.ravel()])
    assert metrics.joint_limit_violation_rate(motion) == pytest.approx(want)
    assert 0.0 < want < 1.0  # random skeletons violate some limits, not all
    assert metrics.joint_limit_violation_rate(motion, limits=(-4.0, 4.0)) == 0.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="pred_motion"):
        metrics.mpjpe(np.zeros((2, 5, 2, 20, 3)), np.zeros((2, 5, 2, 21, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.fid(np.full((4, 2), np.nan), np.zeros((4, 2)))
