"""The training loop: sharded == single-device, metrics.jsonl, NaN guard, config checks."""

import json
import os

import jax
import numpy as np
import pytest

from handx_jax.train import loop, metrics_log, sharding
from tests.train import toy_task


def _config(steps=5, **mesh):
    c = toy_task.get_config()
    c.train.steps = steps
    c.train.ckpt_every = 1000
    c.train.log_every = 1
    for k, v in mesh.items():
        c.mesh[k] = v
    return c


def test_sharded_and_single_device_losses_agree(tmp_path):
    sharded = _config(data=2, fsdp=2, tensor=2)
    loop.train(sharded, str(tmp_path / "sharded"))
    single = _config(data=1, fsdp=1, tensor=1)
    loop.train(single, str(tmp_path / "single"), devices=jax.devices()[:1])
    a = metrics_log.read_metrics(str(tmp_path / "sharded"))
    b = metrics_log.read_metrics(str(tmp_path / "single"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5]
    for key in ("loss", "mse", "l1", "grad_norm"):
        np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b], rtol=0, atol=1e-5)
    # the losses move (so the comparison is not between constants)
    assert len({round(r["loss"], 6) for r in a}) == 5


def test_metrics_file_and_config_json(tmp_path):
    config = _config(steps=30, data=1)
    config.train.log_every = 10
    out = loop.train(config, str(tmp_path), devices=jax.devices()[:1])
    records = metrics_log.read_metrics(str(tmp_path))
    assert [r["step"] for r in records] == [10, 20, 30]
    required = {"step", "loss", "mse", "l1", "lr", "grad_norm", "params", "samples_seen", "flops_seen",
                "step_time", "mfu"}
    assert required <= set(records[0])
    task = toy_task.ToyTask(config)
    for r in records:
        assert r["samples_seen"] == r["step"] * 8
        assert r["flops_seen"] == pytest.approx(task.flops_per_example() * r["samples_seen"])
        assert r["step_time"] > 0 and 0 < r["mfu"] < 1
    assert records[0]["params"] == sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(
        task.init_params(jax.random.PRNGKey(0), toy_task_batch())))
    assert records[-1]["loss"] < 0.7 * records[0]["loss"]     # it learns
    assert out["step"] == 30 and out["final_step"] == 30
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["task"] == toy_task.TOY_TASK and saved["train"]["steps"] == 30
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["30"]


def toy_task_batch():
    ex = toy_task.make_example(0, 8, 6)
    return {k: v[None] for k, v in ex.items()}


def test_nan_guard_names_step_terms_and_last_checkpoint(tmp_path):
    config = _config(steps=20, data=1)
    config.train.ckpt_every = 4
    config.toy.nan_at_step = 7
    with pytest.raises(loop.NonFiniteLossError) as err:
        loop.train(config, str(tmp_path), devices=jax.devices()[:1])
    message = str(err.value)
    assert "step 7" in message
    assert "'loss'" in message and "'mse'" in message and "'l1'" in message
    assert os.path.join(str(tmp_path), "checkpoints", "4") in message
    # nothing non-finite was checkpointed and nothing after step 6 was logged
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [4]
    assert max(r["step"] for r in metrics_log.read_metrics(str(tmp_path))) == 6


def test_bad_batch_size_fails_before_training(tmp_path):
    config = _config(data=2, fsdp=2, tensor=2)
    config.train.batch_size = 30
    with pytest.raises(sharding.MeshError, match="batch_size 30 is not divisible by data\\*fsdp = 4"):
        loop.train(config, str(tmp_path))
