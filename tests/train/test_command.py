"""`handx train` wiring: registration, data resolution, distributed start-up decisions."""

import argparse

import ml_collections
import pytest

from handx_jax.commands import train as train_cmd
from handx_jax.train import distributed


def test_register_adds_train_with_required_options():
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--config", "configs/diffusion.py:size=T", "--workdir", "W"])
    assert args.func is train_cmd.run and args.workdir == "W"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--workdir", "W"])


def test_missing_data_dir_is_named(tmp_path):
    config = ml_collections.ConfigDict({"data": {"dir": str(tmp_path / "nope"), "num_synthetic_clips": 8}})
    with pytest.raises(FileNotFoundError, match="nope"):
        train_cmd.ensure_data(config, str(tmp_path))


def test_existing_synthetic_data_is_reused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.clips.npz").write_bytes(b"")
    config = ml_collections.ConfigDict({"data": {"dir": None, "num_synthetic_clips": 8, "seq_len": 60}})
    config.data.dir = ml_collections.config_dict.placeholder(str)
    train_cmd.ensure_data(config, str(tmp_path))
    assert config.data.dir == str(tmp_path / "data")


@pytest.mark.parametrize("env,expected", [
    ({}, False),
    ({"HANDX_DISTRIBUTED": "1"}, True),
    ({"HANDX_DISTRIBUTED": "0", "SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"}, False),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, True),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, False),
    ({"TPU_WORKER_HOSTNAMES": "a,b"}, True),
    ({"TPU_WORKER_HOSTNAMES": "a"}, False),
])
def test_wants_distributed(env, expected):
    assert distributed.wants_distributed(env) is expected


def test_single_process_does_not_initialize(monkeypatch):
    monkeypatch.delenv("HANDX_DISTRIBUTED", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
    assert distributed.maybe_initialize_distributed() is False


def test_optional_trainer_fields_can_be_overridden():
    from handx_jax import configlib
    from handx_jax.train import loop
    from tests.train import toy_task

    config = toy_task.get_config()
    del config.train["progress"]
    loop.add_trainer_defaults(config)
    configlib.apply_overrides(config, ["train.progress=false", "train.min_lr_ratio=0.1"])
    assert config.train.progress is False and config.train.min_lr_ratio == 0.1
    assert config.train.peak_flops == 1e11       # an existing value is kept
