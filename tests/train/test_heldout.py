"""Held-out loss: logged as eval/loss every train.eval_every steps and after the last, with
samples and FLOPs seen, deterministic, and equal to the loss recomputed from the checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

from handx_jax import configlib
from handx_jax.diffusion import checks
from handx_jax.train import loop


def _toy_config(root, num_test: int, steps: int):
    """A T diffusion config (scratch text: no tower needed) on a toy dataset in `root`."""
    data = str(root / "data")
    checks.write_toy_dataset(data, num_train=32, num_test=num_test)
    config = loop.add_trainer_defaults(configlib.load_config("configs/diffusion.py:size=T,runlocal,text=scratch"))
    config.data.dir = data
    config.train.steps = steps
    config.train.batch_size = 8
    config.train.ckpt_every = steps
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    config = _toy_config(root, num_test=16, steps=10)
    config.train.eval_every = 5
    config.train.eval_batches = 2
    config.diffusion.eval_timesteps = 4
    workdir = str(root / "run")
    loop.train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    return config, workdir, lines


def test_eval_loss_is_logged_with_samples_and_flops(run):
    config, _, lines = run
    evals = [r for r in lines if "eval/loss" in r]
    assert [r["step"] for r in evals] == [5, 10]
    train = {r["step"]: r for r in lines if "loss" in r}
    for r in evals:
        assert {"eval/loss_rep", "eval/loss_vel", "eval/loss_acc"} <= set(r)
        assert r["samples_seen"] == 8 * r["step"] and r["flops_seen"] == train[r["step"]]["flops_seen"]
        assert np.isfinite(r["eval/loss"]) and r["eval/loss"] > 0
    assert evals[0]["eval/loss"] != evals[1]["eval/loss"]


def test_eval_loss_is_deterministic_and_matches_the_checkpoint(run):
    import flax.linen as nn

    from handx_jax.diffusion.task import DiffusionTask
    from handx_jax.train.checkpoint import restore_params

    config, workdir, lines = run
    logged = [r for r in lines if "eval/loss" in r][-1]
    stored, params, step = restore_params(workdir, ema=True)
    assert step == 10
    task = DiffusionTask(stored)
    params = nn.unbox(params)
    dataset = task.eval_inputs(batch_size=8)
    batches = [b for _, b in zip(range(2), iter(dataset))]
    assert len(batches) == 2  # 16 test clips, batches of 8, in order
    fn = jax.jit(task.eval_loss)
    first = np.mean([float(fn(params, b)[0]) for b in batches])
    second = np.mean([float(fn(params, b)[0]) for b in batches])
    assert first == second
    np.testing.assert_allclose(first, logged["eval/loss"], rtol=1e-5)
    # Another timestep grid is another quantity: the grid is part of the definition.
    stored.diffusion.eval_timesteps = 3
    other = np.mean([float(jax.jit(DiffusionTask(stored).eval_loss)(params, b)[0]) for b in batches])
    assert abs(other - first) > 1e-6


def test_a_test_split_smaller_than_a_batch_turns_the_loss_off(tmp_path, capsys):
    config = _toy_config(tmp_path, num_test=4, steps=2)
    workdir = str(tmp_path / "run")
    loop.train(config, workdir)  # trains; the held-out loss is reported off, not an error
    assert "held-out loss off" in capsys.readouterr().err
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert lines[-1]["step"] == 2 and not any("eval/loss" in r for r in lines)
