"""Pickle-free clip store: lossless both ways with the HandX format; dispatch by content."""
import warnings

import numpy as np
import pytest

from handx_jax.data import handx_format, store


def _clips(seed=0, n=4):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        t = 3 + i
        out[f"c{i}"] = {
            "motion": rng.normal(size=(t, 2, 21, 3)).astype(np.float32),
            "left_annotation": [f"L{i}-{k} ünïcode" for k in range(i + 1)],
            "right_annotation": [f"R{i}-{k}" for k in range(i + 1)],
            "interaction_annotation": [f"I{i}-{k}" for k in range(i + 1)],
            "left_pose": rng.normal(size=(t, 48)),
        }
    return out


def _assert_same(a, b):
    assert list(a) == list(b)
    for name in a:
        assert set(a[name]) == set(b[name]), name
        for field, value in a[name].items():
            if isinstance(value, np.ndarray):
                assert b[name][field].dtype == value.dtype
                np.testing.assert_array_equal(b[name][field], value)
            else:
                assert b[name][field] == value


def test_clips_round_trip_and_no_pickle(tmp_path):
    clips = _clips()
    path = tmp_path / "train.clips.npz"
    store.save_clips(path, clips)
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert data["offsets"].tolist() == [0, 3, 7, 12, 18]
    _assert_same(clips, store.load_clips(path))


def test_lossless_both_ways(tmp_path):
    clips = _clips(1)
    handx_format.save_handx(tmp_path / "a.npz", clips)
    store.save_clips(tmp_path / "b.clips.npz", handx_format.load_handx(tmp_path / "a.npz"))
    handx_format.save_handx(tmp_path / "c.npz", store.load_clips(tmp_path / "b.clips.npz"))
    _assert_same(clips, handx_format.load_handx(tmp_path / "c.npz"))
    _assert_same(clips, store.load_any(tmp_path / "b.clips.npz"))
    _assert_same(clips, store.load_any(tmp_path / "a.npz"))


def test_find_split_prefers_pickle_free(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.clips.npz"):
        store.find_split(tmp_path, "train")
    handx_format.save_handx(tmp_path / "train_can_pos_all_wotextfeat.npz", _clips())
    assert store.find_split(tmp_path, "train").endswith("train_can_pos_all_wotextfeat.npz")
    store.save_clips(tmp_path / "train.clips.npz", _clips())
    assert store.find_split(tmp_path, "train").endswith("train.clips.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same clips in both files: no warning
        store.find_split(tmp_path, "train")
    handx_format.save_handx(tmp_path / "train_can_pos_all_wotextfeat.npz", _clips(n=5))
    with pytest.warns(UserWarning, match="hold different clips; using train.clips.npz"):
        assert store.find_split(tmp_path, "train").endswith("train.clips.npz")


def test_table_matches_clips(tmp_path):
    clips = _clips(2)
    store.save_clips(tmp_path / "x.clips.npz", clips)
    table = store.load_any_table(tmp_path / "x.clips.npz")
    assert table.names == list(clips) and len(table) == 4
    np.testing.assert_array_equal(table.clip_motion(2), clips["c2"]["motion"])
    assert table.annotations["right_annotation"][3] == clips["c3"]["right_annotation"]


def test_missing_motion_names_clip(tmp_path):
    with pytest.raises(store.ClipStoreError, match="'bad'"):
        store.save_clips(tmp_path / "x.clips.npz", {"bad": {"left_annotation": ["a"]}})
