"""Dataset completion manifests: an interrupted synthetic generation is not a dataset, and
the consumers (`handx train` with no data dir, the sweep's shared data) write it again."""

import os

import pytest

from handx_jax.data import manifest, synthetic


def _interrupt_at_test_split(monkeypatch):
    real = synthetic.write_split

    def write_split(out_dir, split, *args, **kwargs):
        if split == "test":
            raise KeyboardInterrupt("killed while writing the test split")
        return real(out_dir, split, *args, **kwargs)

    monkeypatch.setattr(synthetic, "write_split", write_split)


def test_interrupted_synthetic_generation_is_not_complete(tmp_path, monkeypatch):
    out = str(tmp_path / "data")
    synthetic.write_dataset(out, 3, 1)  # an earlier, complete generation in the same place
    assert manifest.is_complete(out)
    _interrupt_at_test_split(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_dataset(out, 4, 2)
    assert os.path.isfile(os.path.join(out, "train.clips.npz"))  # the old marker file is there
    assert not manifest.is_complete(out)
    assert "did not finish" in manifest.problems(out)[0]


def test_manifest_lists_files_counts_and_catches_truncation(tmp_path):
    out = str(tmp_path)
    paths = synthetic.write_dataset(out, 3, 2)
    record = manifest.read_manifest(out)
    assert record["counts"] == {"train": 3, "test": 2}
    assert sorted(record["files"]) == sorted(os.path.basename(p) for k, p in paths.items() if k != "manifest")
    assert manifest.is_complete(out, check_hashes=True)
    victim = paths["test_clips"]
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    assert manifest.problems(out) == [f"{victim}: {os.path.getsize(victim)} bytes, the manifest says "
                                      f"{record['files']['test.clips.npz']['bytes']}"]


def test_consumers_regenerate_an_interrupted_dataset(tmp_path, monkeypatch):
    from handx_jax.commands.train import ensure_data
    from handx_jax.scaling import launch
    from tests.train.toy_task import get_config

    sweep_data = str(tmp_path / "sweep_data")
    _interrupt_at_test_split(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_dataset(sweep_data, 2, 1)
    monkeypatch.undo()
    launch.prepare_data({"data": {"dir": sweep_data, "synthetic": True, "num_train": 2, "num_test": 1}})
    assert manifest.is_complete(sweep_data)
    assert os.path.isfile(os.path.join(sweep_data, "test.clips.npz"))

    workdir = tmp_path / "run"
    _interrupt_at_test_split(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_dataset(str(workdir / "data"), 2, 1)
    monkeypatch.undo()
    config = get_config()
    with config.ignore_type():
        config.data.dir = None
        config.data.num_synthetic_clips = 8
        config.data.seq_len = 30
    ensure_data(config, str(workdir))
    assert manifest.is_complete(str(workdir / "data"))
