"""Atomically written files get the mode `open()` would give them (0666 less the umask), not
the 0600 of a bare mkstemp."""

import os
import stat

import numpy as np
import pytest

from handx_jax import atomic
from handx_jax.data import handx_format, store
from handx_jax.data import synthetic
from handx_jax.text import tokenizer


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writers_follow_the_umask(tmp_path, umask):
    assert atomic.process_umask() == umask
    clip = {"motion": np.zeros((4, 2, 21, 3), np.float32), "left_annotation": ["a"],
            "right_annotation": ["b"], "interaction_annotation": ["c"]}
    written = [tmp_path / "a.clips.npz", tmp_path / "b_can_pos_all_wotextfeat.npz", tmp_path / "c.npz",
               tmp_path / "spm.model", tmp_path / "gt.jsonl"]
    store.save_clips(written[0], {"x": clip})
    handx_format.save_handx(written[1], {"x": clip})
    handx_format.atomic_savez(written[2], {"a": np.arange(3)}, allow_pickle=False)
    tokenizer._atomic_write(str(written[3]), b"bytes")
    synthetic._atomic_text(str(written[4]), ["{}"])
    expected = 0o666 & ~umask
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_synthetic_dataset_files_are_0644_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        synthetic.write_dataset(tmp_path, 2, 1, frames=30)
    finally:
        os.umask(old)
    modes = {name: oct(_mode(tmp_path / name)) for name in os.listdir(tmp_path)}
    assert modes and set(modes.values()) == {"0o644"}, modes
