"""Data quality as a sweep axis: per-quality datasets beside the clean one, sharing its test
split, tokenizer and normalisation statistics."""

import os

import numpy as np
import pytest

from handx_jax.data import manifest as data_manifest, store
from handx_jax.scaling import launch, sweeps


def test_quality_points_train_on_their_own_dataset(tmp_path):
    sweep = sweeps.load_sweep("cpu_quality")
    qualities = sorted({p.quality for p in sweep.points})
    assert qualities == ["high", "low", "medium"]
    assert len({p.label for p in sweep.points}) >= 2  # at least two sizes per quality
    manifest = launch.plan_sweep(sweep, str(tmp_path / "q"))
    clean = manifest["data"]["dir"]
    assert set(manifest["data"]["qualities"]) == {"medium", "low"}
    for point in manifest["points"]:
        data_dir = next(a.split("=", 1)[1] for a in point["train"] if a.startswith("--config.data.dir="))
        expected = clean if "-q" not in point["name"] else manifest["data"]["qualities"][point["name"].split("-q")[1].split("-")[0]]
        assert data_dir == expected
    assert len({p["id"] for p in manifest["points"]}) == len(manifest["points"])


def test_quality_point_refuses_a_real_dataset(tmp_path):
    point = sweeps.ScalePoint(family="diffusion", size="T", data=1.0, steps=5, quality="low")
    with pytest.raises(ValueError, match="synthetic"):
        sweeps.point_data_dir(str(tmp_path), point, synthetic=False)
    with pytest.raises(ValueError, match="quality"):
        sweeps.ScalePoint(family="diffusion", size="T", data=1.0, steps=5, quality="awful")


def test_quality_variants_keep_the_clean_test_split_and_share_artifacts(tmp_path):
    from handx_jax.data import synthetic

    clean = str(tmp_path / "synthetic_data")
    synthetic.write_dataset(clean, 12, 6, seed=0)
    for name in ("spm.model", "spm.vocab"):  # stand-ins for the tokenizer the shared stages train
        with open(os.path.join(clean, name), "wb") as f:
            f.write(b"tokenizer " + name.encode())
    manifest = {"data": {"dir": clean, "num_train": 12, "num_test": 6,
                         "qualities": {"low": clean + "_low"}}, "points": []}
    launch.prepare_quality_data(manifest)
    low = clean + "_low"
    assert data_manifest.is_complete(low)
    clean_test, low_test = store.load_clips(store.find_split(clean, "test")), store.load_clips(store.find_split(low, "test"))
    assert list(clean_test) == list(low_test)
    for name in clean_test:
        np.testing.assert_array_equal(clean_test[name]["motion"], low_test[name]["motion"])
    clean_train, low_train = store.load_clips(store.find_split(clean, "train")), store.load_clips(store.find_split(low, "train"))
    assert list(clean_train) == list(low_train)
    assert any(not np.array_equal(clean_train[n]["motion"], low_train[n]["motion"]) for n in clean_train)
    for name in ("spm.model", "spm.vocab", "stats_joint_pos_w_scalar_rot.npz", "stats_joint_pos.npz"):
        with open(os.path.join(clean, name), "rb") as a, open(os.path.join(low, name), "rb") as b:
            assert a.read() == b.read(), name
