"""Training configs are checked before a run starts: bad fields refused, naming each, with
nothing written; every shipped config passes."""
import os

import pytest

from handx_jax import cli, configlib
from handx_jax.train import config_checks, loop

CONFIGS = ("configs/diffusion.py", "configs/evaluator.py", "configs/text_tower.py")


def _toy():
    return loop.add_trainer_defaults(configlib.load_config("tests/train/toy_config.py"))


@pytest.mark.parametrize("override, expected", [
    ("train.steps=0", "train.steps=0 must be >= 1"),
    ("train.steps=-5", "train.steps=-5 must be >= 1"),
    ("train.ckpt_every=0", "train.ckpt_every=0 must be >= 1"),
    ("train.log_every=0", "train.log_every=0 must be >= 1"),
    ("train.lr=nan", "train.lr=nan must be finite"),
    ("train.ema_decay=1.5", "train.ema_decay=1.5 must be in [0.0, 1.0]"),
    ("data.ratio=0", "data.ratio=0.0 must be in (0, 1]"),
])
def test_train_fields_refused(override, expected):
    config = configlib.apply_overrides(_toy(), [override])
    with pytest.raises(config_checks.ConfigError, match=r"config refused: .*" + expected.replace(
            "[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        config_checks.check_train_config(config)


def test_model_counts_and_all_problems_in_one_message():
    config = configlib.load_config("configs/diffusion.py:size=T,runlocal")
    config = configlib.apply_overrides(loop.add_trainer_defaults(config), [
        "model.num_layers=-1", "model.num_heads=3", "train.steps=0"])
    bad = config_checks.problems(config)
    assert "model.num_layers=-1 must be >= 1" in bad
    assert "model.d_model=64 is not divisible by model.num_heads=3" in bad
    assert "train.steps=0 must be >= 1" in bad


@pytest.mark.parametrize("path", CONFIGS)
def test_every_shipped_config_and_size_passes(path):
    module = configlib.load_module(path)
    sizes = list(getattr(module, "SIZES", {})) or [None]
    for size in sizes:
        for runlocal in ("", ",runlocal"):
            spec = path + ":" + (f"size={size}" if size else "") + runlocal
            config = loop.add_trainer_defaults(configlib.load_config(spec.rstrip(":")))
            assert config_checks.problems(config) == [], spec


def test_trainer_refuses_before_writing(tmp_path):
    config = configlib.apply_overrides(_toy(), ["train.ckpt_every=0"])
    workdir = tmp_path / "run"
    with pytest.raises(config_checks.ConfigError, match="train.ckpt_every=0"):
        loop.train(config, str(workdir))
    assert not workdir.exists()


def test_cli_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    workdir = tmp_path / "run"
    rc = cli.main(["train", "--config", "configs/diffusion.py:size=T,runlocal", "--workdir", str(workdir),
                   "--config.model.num_layers=-1", "--config.train.steps=0"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: config refused: train.steps=0 must be >= 1; "
                   "model.num_layers=-1 must be >= 1"], err
    assert not os.path.exists(workdir)


def test_unknown_override_is_a_user_error(capsys):
    with pytest.raises(KeyError):  # still a KeyError for callers that catch one
        configlib.apply_overrides(_toy(), ["model.nope=1"])
    assert cli.main(["train", "--config", "tests/train/toy_config.py", "--workdir", "unused",
                     "--config.train.nope=1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: override 'train.nope=1': config has no field 'train.nope'")
