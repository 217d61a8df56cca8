import ml_collections
import pytest

from handx_jax import configlib


def test_parse_arg():
    assert configlib.parse_arg("size=S,data=0.2,runlocal") == {"size": "S", "data": 0.2, "runlocal": True}
    assert configlib.parse_arg(None) == {}


def test_overrides_cast_to_existing_type():
    cfg = ml_collections.ConfigDict({"train": {"steps": 10, "lr": 1e-4, "name": "x", "flag": False}})
    configlib.apply_overrides(cfg, ["train.steps=100", "train.lr=1", "train.name=12", "train.flag=true"])
    assert cfg.train.steps == 100 and cfg.train.lr == 1.0 and cfg.train.name == "12" and cfg.train.flag is True
    with pytest.raises(KeyError, match="no field"):
        configlib.apply_overrides(cfg, ["train.nope=1"])


def test_split_config_args():
    rest, ov = configlib.split_config_args(["train", "--config.train.steps=5", "--config.a", "3", "--workdir", "w"])
    assert rest == ["train", "--workdir", "w"] and ov == ["train.steps=5", "a=3"]


def test_parse_options_and_pick_size_name_the_source():
    assert configlib.parse_options("size=S,runlocal", ("size", "runlocal"), "c.py") == {"size": "S", "runlocal": True}
    with pytest.raises(ValueError, match=r"c.py: unknown option\(s\) \['bogus'\]; allowed: size, runlocal"):
        configlib.parse_options("bogus=1", ("size", "runlocal"), "c.py")
    sizes = {"XS": 1, "S": 2}
    assert configlib.pick_size({}, sizes, "XS", "c.py") == "XS"
    assert configlib.pick_size({"size": "S"}, sizes, "XS", "c.py") == "S"
    with pytest.raises(ValueError, match="c.py: unknown size 'Q'; choose one of XS, S"):
        configlib.pick_size({"size": "Q"}, sizes, "XS", "c.py")
