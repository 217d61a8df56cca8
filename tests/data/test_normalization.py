"""Streaming statistics: one pass over chunks equals the two-pass answer; stored beside data."""
import numpy as np

from handx_jax.data import normalization, representations, store

from tests.data._clips import plausible_clips


def test_chunked_moments_match_numpy():
    rng = np.random.default_rng(0)
    rows = rng.normal(loc=3.0, scale=2.0, size=(1000, 6))
    rows[:, 4] = 7.0  # constant feature -> floored std of 1
    rows[:, 5] *= 1e-6  # tiny but real spread -> floored too (below 1e-4)
    chunks = np.array_split(rows, [1, 5, 400, 401, 999])
    stats = normalization.compute_stats(chunks, 6)
    np.testing.assert_allclose(stats.mean, rows.mean(axis=0), rtol=1e-6)
    expected_std = rows.std(axis=0)
    np.testing.assert_allclose(stats.std[:4], expected_std[:4], rtol=1e-5)
    assert stats.std[4] == 1.0 and stats.std[5] == 1.0 and stats.count == 1000
    np.testing.assert_allclose(stats.denormalize(stats.normalize(rows)), rows, atol=1e-5)


def test_load_or_compute_over_train_split(tmp_path):
    clips = plausible_clips(7, seed=4, lengths=(10, 13))
    store.save_clips(tmp_path / "train.clips.npz", clips)
    name = "joint_pos_w_scalar_rot"
    stats = normalization.load_or_compute_stats(tmp_path, name, progress=False)
    features = np.concatenate([representations.to_features(c["motion"], name)
                               for c in clips.values()])
    np.testing.assert_allclose(stats.mean, features.mean(axis=0), atol=1e-6)
    std = features.std(axis=0)
    np.testing.assert_allclose(stats.std, np.where(std < 1e-4, 1.0, std), rtol=1e-4)
    assert stats.count == features.shape[0]
    path = tmp_path / "stats_joint_pos_w_scalar_rot.npz"
    assert path.exists()
    # A second call reads the file rather than recomputing.
    with np.load(path) as data:
        marker = dict(data)
    marker["mean"] = marker["mean"] + 1.0
    np.savez(path, **marker)
    again = normalization.load_or_compute_stats(tmp_path, name, progress=False)
    np.testing.assert_allclose(again.mean, stats.mean + 1.0, atol=1e-6)


def test_table_features_group_by_length_in_order():
    clips = plausible_clips(5, seed=5, lengths=(9, 4, 9))
    table = store.table_from_clips(clips)
    feats = normalization.table_features(table, "joint_pos", 1, 5)
    for got, clip in zip(feats, list(clips.values())[1:5]):
        np.testing.assert_allclose(got, representations.to_features(clip["motion"], "joint_pos"))


def test_statistics_follow_a_changed_train_file(tmp_path):
    store.save_clips(tmp_path / "train.clips.npz", plausible_clips(4, seed=1, lengths=(8,)))
    first = normalization.load_or_compute_stats(tmp_path, "joint_pos", progress=False)
    clips = plausible_clips(4, seed=1, lengths=(8,))
    for clip in clips.values():
        clip["motion"] = clip["motion"] * 2.0
    store.save_clips(tmp_path / "train.clips.npz", clips)
    second = normalization.load_or_compute_stats(tmp_path, "joint_pos", progress=False)
    np.testing.assert_allclose(second.std, 2.0 * first.std, rtol=1e-4)
