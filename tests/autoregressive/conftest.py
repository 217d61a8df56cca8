"""A tiny synthetic dataset (TFDS build, feature caches and statistics made up front) shared
by the tokenizer tests, and the trainer tests' persistent compile cache."""

import os

import pytest

from tests.train.conftest import CACHE_DIR  # noqa: F401  (sets the shared XLA compile cache)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from absl import flags

    from handx_jax.data import pipeline, synthetic

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    out = str(tmp_path_factory.mktemp("fsq_data"))
    synthetic.write_dataset(out, 32, 16, frames=60, seed=0)
    for split in ("train", "test"):  # build everything once, before any subprocess reads it
        next(iter(pipeline.make_dataset(out, split, batch_size=8, shuffle=False, num_epochs=1)))
    assert os.path.isfile(os.path.join(out, "stats_joint_pos_w_scalar_rot.npz"))
    return out
