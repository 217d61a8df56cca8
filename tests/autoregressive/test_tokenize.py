"""`handx tokenize` and `load_tokens`: files, padding, agreement with an independent encoding,
resumption, identity checks and errors naming the file."""

import os
import shutil

import jax
import numpy as np
import pytest

from handx_jax import cli, configlib
from handx_jax.autoregressive import tokens as tokens_lib
from handx_jax.autoregressive.fsq_run import FsqRun
from handx_jax.data import representations, store
from handx_jax.train import loop

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "fsq.py")


@pytest.fixture(scope="module")
def fsq_dir(tiny_data, tmp_path_factory):
    config = loop.add_trainer_defaults(configlib.load_config(f"{CONFIG}:T,runlocal"))
    config.data.dir = tiny_data
    config.train.steps = 3
    config.train.ckpt_every = 1
    config.train.eval_every = -1
    config.train.progress = False
    workdir = str(tmp_path_factory.mktemp("fsq_run"))
    loop.train(config, workdir, devices=jax.devices()[:1])
    return workdir


@pytest.fixture()
def data_copy(tiny_data, tmp_path):
    """The clip files of the tiny dataset plus a split of clips of uneven lengths."""
    out = tmp_path / "data"
    out.mkdir()
    for split in ("train", "test"):
        shutil.copy(os.path.join(tiny_data, f"{split}.clips.npz"), out / f"{split}.clips.npz")
    clips = store.load_clips(os.path.join(tiny_data, "test.clips.npz"))
    uneven = {}
    for (name, clip), frames in zip(list(clips.items())[:3], (60, 45, 7)):
        uneven[name] = dict(clip, motion=clip["motion"][:frames])
    store.save_clips(str(out / "val.clips.npz"), uneven)
    return str(out)


def test_tokenize_writes_every_split_matching_an_independent_encoding(fsq_dir, data_copy):
    assert cli.main(["tokenize", "--fsq", fsq_dir, "--data", data_copy, "--batch-size", "5"]) == 0
    run = FsqRun(fsq_dir)
    assert run.codebook_size == 512 and run.downsample == 2
    for split in ("train", "val", "test"):
        path = tokens_lib.tokens_path(data_copy, run.key, split)
        assert path == os.path.join(data_copy, "motion_tokens", run.key, f"{split}.npz")
        with np.load(path, allow_pickle=False) as f:  # pickle-free
            assert sorted(f.files) == ["codes", "lengths", "meta_json", "names"]
        got = tokens_lib.load_tokens(data_copy, run.key, split)
        clips = store.load_clips(os.path.join(data_copy, f"{split}.clips.npz"))
        assert list(got.names) == list(clips)
        assert got.codes.dtype == np.int32 and got.lengths.dtype == np.int32
        assert got.meta["fsq_key"] == run.key and got.meta["codebook_size"] == 512
        assert got.meta["downsample"] == 2 and got.meta["representation"] == "joint_pos_w_scalar_rot"
        # Oracle: each clip alone, features and normalisation written out here, padded to even length.
        for i, clip in enumerate(clips.values()):
            motion = clip["motion"].astype(np.float32)
            n_tok = -(-len(motion) // 2)
            assert got.lengths[i] == n_tok
            feats = representations.to_features(motion, run.representation)
            x = np.zeros((1, n_tok * 2, feats.shape[-1]), np.float32)
            x[0, : len(feats)] = (feats - run.stats.mean) / run.stats.std
            expected = run.encode(x)[0]
            if len(motion) == 60:
                np.testing.assert_array_equal(got.clip_codes(i), expected)
            assert np.all(got.codes[i, n_tok:] == tokens_lib.PAD)
            assert got.codes[i, :n_tok].min() >= 0 and got.codes[i, :n_tok].max() < 512
    val = tokens_lib.load_tokens(data_copy, run.key, "val")
    assert list(val.lengths) == [30, 23, 4] and val.codes.shape == (3, 30)
    decoded = run.decode(val.codes[:1])
    assert decoded.shape == (1, 60, 168) and decoded.dtype == np.float32


def test_tokenize_resumes_and_rewrites_stale_files(fsq_dir, data_copy):
    run = FsqRun(fsq_dir)
    written = tokens_lib.tokenize_dataset(run, data_copy, progress=False, log=lambda *_: None)
    assert sorted(written) == ["test", "train", "val"]
    stamps = {s: os.stat(p).st_mtime_ns for s, p in written.items()}
    lines = []
    tokens_lib.tokenize_dataset(run, data_copy, progress=False, log=lines.append)
    assert {s: os.stat(p).st_mtime_ns for s, p in written.items()} == stamps   # nothing redone
    assert sum("kept" in line for line in lines) == 3
    # A changed split file (regenerated data) is tokenized again; the others are kept.
    clips = store.load_clips(os.path.join(data_copy, "val.clips.npz"))
    store.save_clips(os.path.join(data_copy, "val.clips.npz"), dict(list(clips.items())[:2]))
    lines.clear()
    tokens_lib.tokenize_dataset(run, data_copy, progress=False, log=lines.append)
    assert os.stat(written["train"]).st_mtime_ns == stamps["train"]
    assert len(tokens_lib.load_tokens(data_copy, run.key, "val")) == 2
    assert any(line.startswith("val: wrote") for line in lines)


def test_load_tokens_errors_name_the_file(fsq_dir, data_copy):
    run = FsqRun(fsq_dir)
    with pytest.raises(FileNotFoundError, match="other-key.*test.npz.*handx tokenize"):
        tokens_lib.load_tokens(data_copy, "other-key", "test")
    tokens_lib.tokenize_dataset(run, data_copy, splits=("test",), progress=False, log=lambda *_: None)
    path = tokens_lib.tokens_path(data_copy, run.key, "test")
    copied = tokens_lib.tokens_path(data_copy, "fsq512-x2-000000000000", "test")
    os.makedirs(os.path.dirname(copied))
    shutil.copy(path, copied)
    with pytest.raises(ValueError, match=f"made by tokenizer '{run.key}'"):
        tokens_lib.load_tokens(data_copy, "fsq512-x2-000000000000", "test")
    with open(path, "wb") as f:
        f.write(b"not an npz")
    with pytest.raises(ValueError, match=f"{path}: unreadable token file"):
        tokens_lib.load_tokens(data_copy, run.key, "test")


def test_fsq_run_key_follows_the_weights_and_refuses_other_runs(fsq_dir, tmp_path):
    run = FsqRun(fsq_dir)
    assert run.key.startswith("fsq512-x2-") and FsqRun(fsq_dir).key == run.key
    from handx_jax.train import checkpoint

    steps = checkpoint.all_steps(fsq_dir)
    assert steps[-2:] == [2, 3]
    earlier = FsqRun(fsq_dir, step=2)   # other weights, same config: another key
    assert earlier.key != run.key and earlier.key.startswith("fsq512-x2-")
    with pytest.raises(ValueError, match="outside"):
        run.decode(np.array([[512]]))
    with pytest.raises(ValueError, match="multiple of 2"):
        run.encode(np.zeros((1, 5, 168), np.float32))
    joints = run.joints(run.decode(np.zeros((1, 30), np.int32)))
    assert joints.shape == (1, 60, 2, 21, 3)
