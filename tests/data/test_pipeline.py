"""End to end: an independently written HandX file -> validate -> TFDS -> grain batches."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import grain
import numpy as np
import pytest

from handx_jax import cli
from handx_jax.data import (normalization, pipeline, representations, store, subsets,
                            tfds_builder)

from tests.data._clips import plausible_clips, write_plain_handx

LENGTHS = (60, 75, 41, 60)  # exact, croppable, padded


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("handx")
    write_plain_handx(root / "train_can_pos_all_wotextfeat.npz",
                      plausible_clips(22, seed=0, lengths=LENGTHS, k=5))
    write_plain_handx(root / "test_can_pos_all_wotextfeat.npz",
                      plausible_clips(6, seed=1, lengths=(60,), k=5))
    assert cli.main(["data", "validate", str(root)]) == 0
    return root


def _source_clips(data_dir, split="train"):
    return store.load_any(store.find_split(data_dir, split))


def _dataset(data_dir, **kwargs):
    split = kwargs.pop("split", "train")
    args = dict(batch_size=4, seq_len=60, seed=0, shard_index=0, shard_count=1)
    args.update(kwargs)
    return pipeline.make_dataset(data_dir, split, **args)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_batches_have_right_shapes_and_values(data_dir):
    clips = _source_clips(data_dir)
    names = list(clips)
    name = "joint_pos_w_scalar_rot"
    stats = normalization.load_or_compute_stats(data_dir, name, progress=False)
    batches = _take(iter(_dataset(data_dir)), 6)
    batch = batches[0]
    assert batch["motion"].shape == (4, 60, 168) and batch["motion"].dtype == np.float32
    assert batch["mask"].shape == (4, 60) and batch["length"].dtype == np.int32
    assert batch["caption_left"].shape == (4,)
    seen_crop = seen_pad = False
    for batch in batches:
        for b in range(4):
            clip = clips[names[batch["clip_index"][b]]]
            full = (representations.to_features(clip["motion"], name) - stats.mean) / stats.std
            valid = int(batch["length"][b])
            assert valid == min(60, clip["motion"].shape[0])
            np.testing.assert_array_equal(batch["mask"][b], np.arange(60) < valid)
            assert np.all(batch["motion"][b, valid:] == 0.0)
            got = batch["motion"][b, :valid]
            starts = [s for s in range(full.shape[0] - valid + 1)
                      if np.allclose(full[s:s + valid], got, atol=1e-5)]
            assert starts, "window is not a crop of the clip's normalised features"
            seen_crop |= starts[0] > 0
            seen_pad |= valid < 60
            pick = clip["left_annotation"].index(str(batch["caption_left"][b]))
            assert str(batch["caption_right"][b]) == clip["right_annotation"][pick]
            assert str(batch["caption_relation"][b]) == clip["interaction_annotation"][pick]
    assert seen_pad and seen_crop


def test_tfds_records_equal_source(data_dir):
    version = tfds_builder.ensure_built(data_dir)
    clips = _source_clips(data_dir, "test")
    source = tfds_builder.data_source(version, "test")
    assert len(source) == len(clips)
    for i, (name, clip) in enumerate(clips.items()):
        record = source[i]
        assert record["name"].decode() == name and record["clip_index"] == i
        np.testing.assert_array_equal(record["motion"], clip["motion"])
        assert [s.decode() for s in record["interaction_annotation"]] == \
            clip["interaction_annotation"]
        light = pipeline.CaptionRecordSource(source)[i]
        full = pipeline.CaptionRecordSource(source, decode_full=True)[i]
        assert light["clip_index"] == full["clip_index"] == i
        for key in ("left_annotation", "right_annotation", "interaction_annotation"):
            assert list(light[key]) == list(full[key])


def test_readable_through_tfds_data_source_by_name(data_dir):
    import tensorflow_datasets as tfds
    tfds_builder.ensure_built(data_dir)
    source = tfds.data_source(tfds_builder.DATASET_NAME, data_dir=str(data_dir / "tfds"),
                              split="train")
    clips = _source_clips(data_dir)
    assert len(source) == len(clips)
    last = list(clips.values())[-1]
    np.testing.assert_array_equal(source[len(clips) - 1]["motion"], last["motion"])


def test_epoch_covers_every_clip_once_and_reshuffles(data_dir):
    n = len(_source_clips(data_dir))
    ds = _dataset(data_dir, batch_size=1, num_epochs=2, drop_remainder=False)
    order = [int(b["clip_index"][0]) for b in ds]
    assert len(order) == 2 * n
    assert sorted(order[:n]) == sorted(order[n:]) == list(range(n))
    assert order[:n] != order[n:] and order[:n] != list(range(n))
    unshuffled = _dataset(data_dir, batch_size=1, num_epochs=1, shuffle=False)
    assert [int(b["clip_index"][0]) for b in unshuffled] == list(range(n))


def test_shards_partition_and_ratio_subsets(data_dir):
    names = list(_source_clips(data_dir))
    per_shard = []
    for index in range(3):
        ds = _dataset(data_dir, batch_size=1, num_epochs=1, drop_remainder=False,
                      shard_index=index, shard_count=3)
        per_shard.append({int(b["clip_index"][0]) for b in ds})
    assert set().union(*per_shard) == set(range(len(names)))
    assert sum(map(len, per_shard)) == len(names)
    ds = _dataset(data_dir, batch_size=1, num_epochs=1, drop_remainder=False, data_ratio=0.5,
                  seed=7)
    kept = {names[int(b["clip_index"][0])] for b in ds}
    assert kept == set(subsets.subset_names(names, 0.5, seed=7)) and len(kept) == 11


def test_seeded_and_deterministic(data_dir):
    a = _take(iter(_dataset(data_dir, seed=1)), 3)
    b = _take(iter(_dataset(data_dir, seed=1)), 3)
    c = _take(iter(_dataset(data_dir, seed=2)), 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["motion"], y["motion"])
        np.testing.assert_array_equal(x["caption_left"], y["caption_left"])
    assert any(not np.array_equal(x["clip_index"], z["clip_index"]) for x, z in zip(a, c))


def test_stack_examples_matches_grain_default_batching():
    examples = [{"a": np.full((2, 3), i, np.float32), "n": np.int32(i), "s": f"text {i}",
                 "nested": {"ids": [np.arange(2) + i, np.int64(i)]}, "t": (i, 2.5)}
                for i in range(5)]
    ours = pipeline.stack_examples(examples)
    default = next(iter(grain.MapDataset.source(examples).batch(5)))
    flat_ours = {k: v for k, v in ours.items() if k not in ("nested", "t")}
    assert set(ours) == set(default)
    for key, value in flat_ours.items():
        assert value.dtype == default[key].dtype and value.shape == default[key].shape
        np.testing.assert_array_equal(value, default[key])
    for got, want in zip(ours["nested"]["ids"], default["nested"]["ids"]):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    for got, want in zip(ours["t"], default["t"]):
        np.testing.assert_array_equal(got, want)


class _TokenStub(grain.transforms.Map):
    """Stands in for the text stage: strings -> numbers, captions removed."""

    def map(self, element):
        element = dict(element)
        element["caption_len"] = np.int32(len(element.pop("caption_left")))
        del element["caption_right"], element["caption_relation"]
        return element


def test_extra_transforms_run_before_batching(data_dir):
    batch = next(iter(_dataset(data_dir, extra_transforms=(_TokenStub(),), representation="joint_pos",
                               normalize=False)))
    assert set(batch) == {"motion", "mask", "length", "clip_index", "caption_len"}
    assert batch["caption_len"].shape == (4,) and batch["motion"].shape == (4, 60, 126)
    assert all(v.dtype != object and v.dtype.kind != "U" for v in batch.values())


RESTORE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    from handx_jax.data import pipeline
    data_dir, state_path, out_path = sys.argv[1:4]
    ds = pipeline.make_dataset(data_dir, "train", batch_size=4, seq_len=60, seed=3,
                               shard_index=0, shard_count=1)
    it = iter(ds)
    with open(state_path) as fh:
        it.set_state(json.load(fh))
    batches = [next(it) for _ in range(3)]
    np.savez(out_path, **{f"{k}_{i}": v for i, b in enumerate(batches) for k, v in b.items()})
""")


def test_iterator_state_restores_in_a_new_process(data_dir, tmp_path):
    it = iter(_dataset(data_dir, seed=3))
    _take(it, 5)  # past the first epoch boundary (22 clips, batches of 4)
    state = it.get_state()
    expected = _take(it, 3)
    (tmp_path / "state.json").write_text(pipeline.state_to_json(state))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", RESTORE_SCRIPT, str(data_dir),
                    str(tmp_path / "state.json"), str(tmp_path / "out.npz")],
                   check=True, env=env, timeout=300)
    with np.load(tmp_path / "out.npz") as restored:
        for i, batch in enumerate(expected):
            for key, value in batch.items():
                np.testing.assert_array_equal(restored[f"{key}_{i}"], value, err_msg=key)
    # And in-process, after moving on.
    _take(it, 2)
    it.set_state(json.loads(pipeline.state_to_json(state)))
    np.testing.assert_array_equal(next(it)["motion"], expected[0]["motion"])


def test_tfds_only_directory_and_cli_build(data_dir, tmp_path):
    out = tmp_path / "built"
    assert cli.main(["data", "build", "--src", str(data_dir), "--out", str(out)]) == 0
    only = tmp_path / "only"
    shutil.copytree(out, only / "tfds")
    batch = next(iter(_dataset(only, representation="joint_pos", shuffle=False)))
    stats = normalization.load_stats(only / "stats_joint_pos.npz")
    clips = _source_clips(data_dir)
    first = list(clips.values())[int(batch["clip_index"][0])]
    want = (representations.to_features(first["motion"], "joint_pos") - stats.mean) / stats.std
    np.testing.assert_allclose(batch["motion"][0], want[:60], atol=1e-5)


def test_interrupted_tfds_build_is_not_trusted(data_dir, tmp_path):
    """A build writes its completion manifest last; a version directory without it (the
    process died mid-build) is built again, never read as a dataset."""
    out = tmp_path / "tfds"
    version = tfds_builder.build(data_dir, out)
    assert tfds_builder.is_complete(version) and tfds_builder.is_current(data_dir, out)
    record = json.load(open(os.path.join(version, "manifest.json")))
    assert record["counts"] == {"train": 22, "test": 6}
    os.remove(os.path.join(version, "manifest.json"))  # as if killed before the last write
    assert not tfds_builder.is_current(data_dir, out)
    rebuilt = tfds_builder.build(data_dir, out)  # not returned as it was: built again
    assert tfds_builder.is_complete(rebuilt)
    assert len(tfds_builder.data_source(rebuilt, "test")) == 6


def test_build_refuses_invalid_source(tmp_path, capsys):
    clips = plausible_clips(3, seed=2, lengths=(10,))
    clips["clip_0002"]["motion"] = clips["clip_0002"]["motion"] * 1000.0
    write_plain_handx(tmp_path / "train_can_pos_all_wotextfeat.npz", clips)
    assert cli.main(["data", "build", "--src", str(tmp_path)]) == 1
    assert "clip_0002" in capsys.readouterr().err


def test_cli_convert_round_trip(data_dir, tmp_path, capsys):
    src = store.find_split(data_dir, "test")
    assert cli.main(["data", "convert", src, str(tmp_path / "test.clips.npz")]) == 0
    assert cli.main(["data", "convert", str(tmp_path / "test.clips.npz"),
                     str(tmp_path / "back.npz")]) == 0
    a, b = store.load_any(src), store.load_any(tmp_path / "back.npz")
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name]["motion"], b[name]["motion"])
        assert a[name]["left_annotation"] == b[name]["left_annotation"]
    assert cli.main(["data", "stats", "--data_dir", str(tmp_path / "nothing")]) == 1
    assert "wrote 6 clips" in capsys.readouterr().out
    assert cli.main(["data", "stats", "--data_dir", str(data_dir), "--representation",
                     "joint_pos", "--force"]) == 0
    n_frames = sum(c["motion"].shape[0] for c in _source_clips(data_dir).values())
    assert f"126 features over {n_frames} frames" in capsys.readouterr().out


def test_worker_processes_give_the_same_batches_and_restore(data_dir):
    local = _take(iter(_dataset(data_dir, seed=5)), 4)
    it = iter(_dataset(data_dir, seed=5, worker_count=1))
    try:
        remote = _take(it, 2)
        state = it.get_state()
        remote += _take(it, 2)
        _take(it, 1)
        it.set_state(state)
        again = _take(it, 2)
    finally:
        del it
    for x, y in zip(local, remote):
        np.testing.assert_array_equal(x["motion"], y["motion"])
        np.testing.assert_array_equal(x["caption_relation"], y["caption_relation"])
    for x, y in zip(local[2:], again):
        np.testing.assert_array_equal(x["motion"], y["motion"])
        np.testing.assert_array_equal(x["clip_index"], y["clip_index"])


def test_test_split_and_default_shard(data_dir):
    ds = pipeline.make_dataset(data_dir, "test", batch_size=2, shuffle=False, num_epochs=1)
    assert [b["clip_index"].tolist() for b in ds] == [[0, 1], [2, 3], [4, 5]]


def test_regenerated_source_rebuilds_tfds_cache_and_stats(tmp_path):
    write_plain_handx(tmp_path / "train_can_pos_all_wotextfeat.npz",
                      plausible_clips(5, seed=3, lengths=(60,)))
    first = next(iter(_dataset(tmp_path, batch_size=5, shuffle=False)))
    clips = plausible_clips(7, seed=4, lengths=(60,))
    write_plain_handx(tmp_path / "train_can_pos_all_wotextfeat.npz", clips)
    ds = _dataset(tmp_path, batch_size=7, shuffle=False, num_epochs=1)
    batch = next(iter(ds))
    assert batch["clip_index"].tolist() == list(range(7))
    stats = normalization.load_or_compute_stats(tmp_path, "joint_pos_w_scalar_rot")
    want = (representations.to_features(clips["clip_0006"]["motion"], "joint_pos_w_scalar_rot")
            - stats.mean) / stats.std
    np.testing.assert_allclose(batch["motion"][6], want, atol=1e-5)
    assert not np.allclose(first["motion"][0], batch["motion"][0])


def test_build_from_pickle_free_files(data_dir, tmp_path):
    clips = _source_clips(data_dir, "test")
    store.save_clips(tmp_path / "train.clips.npz", clips)
    version = tfds_builder.build(tmp_path, tmp_path / "tfds")
    source = tfds_builder.data_source(version, "train")
    assert len(source) == len(clips)
    for i, (name, clip) in enumerate(clips.items()):
        record = source[i]
        assert record["name"].decode() == name
        np.testing.assert_array_equal(record["motion"], clip["motion"])
        assert [s.decode() for s in record["left_annotation"]] == clip["left_annotation"]
    with pytest.raises(KeyError, match="no split 'test'"):
        tfds_builder.data_source(version, "test")


def test_read_only_data_directory_uses_a_cache_directory(tmp_path, monkeypatch):
    data = tmp_path / "shared"
    data.mkdir()
    write_plain_handx(data / "train_can_pos_all_wotextfeat.npz",
                      plausible_clips(6, seed=8, lengths=(60,)))
    real = store.is_writable
    monkeypatch.setattr(store, "is_writable",
                        lambda d: False if str(d).startswith(str(data)) else real(d))
    monkeypatch.setenv("HANDX_CACHE_DIR", str(tmp_path / "cache"))
    batch = next(iter(_dataset(data, batch_size=6, shuffle=False, num_epochs=1)))
    assert batch["clip_index"].tolist() == list(range(6))
    assert sorted(os.listdir(data)) == ["train_can_pos_all_wotextfeat.npz"]  # untouched
    (derived,) = os.listdir(tmp_path / "cache")
    written = set(os.listdir(tmp_path / "cache" / derived))
    assert {"tfds", "stats_joint_pos_w_scalar_rot.npz"} <= written
