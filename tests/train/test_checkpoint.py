"""Checkpoints restore onto other meshes and device counts; restore_params for sampling."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from handx_jax.train import checkpoint, loop
from tests.train import subprocess_util as sp
from tests.train import toy_task


def _config(steps, **mesh):
    c = toy_task.get_config()
    c.train.steps = steps
    c.train.ckpt_every = 3
    c.train.log_every = 1
    for k, v in mesh.items():
        c.mesh[k] = v
    return c


@pytest.fixture(scope="module")
def run_8dev(tmp_path_factory):
    """3 steps trained on data=2, fsdp=2, tensor=2 (8 devices), checkpoint at step 3."""
    workdir = tmp_path_factory.mktemp("mesh222")
    loop.train(_config(3, data=2, fsdp=2, tensor=2), str(workdir))
    return workdir


def _restore_state(workdir, **mesh):
    trainer = loop.Trainer(_config(3, **mesh), str(workdir))
    manager = checkpoint.make_manager(str(workdir), read_only=True, async_save=False)
    try:
        state, it_state, config = checkpoint.restore(manager, 3, trainer.abstract_state, str(workdir))
    finally:
        manager.close()
    return state, it_state, config


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_restore_onto_a_different_mesh_is_exact(run_8dev):
    same, it_a, cfg = _restore_state(run_8dev, data=2, fsdp=2, tensor=2)
    other, it_b, _ = _restore_state(run_8dev, data=8, fsdp=1, tensor=1)
    assert same.params["Block_0"]["qkv"].sharding.spec == P("fsdp", None, "tensor")
    assert not same.params["Block_0"]["qkv"].sharding.is_fully_replicated
    assert other.params["Block_0"]["qkv"].sharding.is_fully_replicated
    assert dict(other.params["Block_0"]["qkv"].sharding.mesh.shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    for x, y in zip(_leaves(same), _leaves(other)):
        np.testing.assert_array_equal(x, y)
    assert int(same.step) == 3 and it_a == it_b
    assert cfg["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}


def test_training_continues_on_a_different_mesh(run_8dev, tmp_path):
    import shutil
    workdir = tmp_path / "copy"
    shutil.copytree(run_8dev, workdir)
    out = loop.train(_config(5, data=8, fsdp=1, tensor=1), str(workdir))
    assert out["final_step"] == 5 and np.isfinite(out["loss"])
    assert sp.finished_steps(workdir)[-1] == 5


def test_restore_on_one_device_in_another_process(run_8dev, tmp_path):
    out = tmp_path / "params.npz"
    script = (
        "import sys, jax, numpy as np, flax\n"
        "from handx_jax.train import checkpoint\n"
        "assert jax.device_count() == 1\n"
        f"cfg, params, step = checkpoint.restore_params({str(run_8dev)!r}, ema=False)\n"
        "flat = flax.traverse_util.flatten_dict(params, sep='/')\n"
        f"np.savez({str(out)!r}, step=step, **{{k: np.asarray(v) for k, v in flat.items()}})\n"
        "print(cfg.task)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=sp.REPO, env=sp.env(1),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == toy_task.TOY_TASK
    state, _, _ = _restore_state(run_8dev, data=2, fsdp=2, tensor=2)
    import flax
    expected = flax.traverse_util.flatten_dict(state.params, sep="/")
    got = np.load(out)
    assert int(got["step"]) == 3
    assert set(got.files) - {"step"} == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], np.asarray(v), err_msg=k)


def test_restore_params_ema_and_errors(run_8dev, tmp_path):
    cfg, ema, step = checkpoint.restore_params(str(run_8dev))
    _, raw, _ = checkpoint.restore_params(str(run_8dev), step=3, ema=False)
    assert step == 3 and cfg.train.steps == 3
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(ema), _leaves(raw)))
    # The partial read gives exactly the weights of the whole train state.
    full, _, _ = _restore_state(run_8dev, data=8, fsdp=1, tensor=1)
    for got, want in ((ema, full.ema_params), (raw, full.params)):
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        for x, y in zip(_leaves(got), _leaves(want)):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(FileNotFoundError, match="step 7 not in"):
        checkpoint.restore_params(str(run_8dev), step=7)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        checkpoint.restore_params(str(tmp_path))
    assert json.load(open(run_8dev / "config.json"))["mesh"]["fsdp"] == 2
