"""Exact resume: SIGKILL mid-run then resume ends bit-identical to an uninterrupted run;
SIGTERM saves a checkpoint and exits cleanly (both through the `handx train` entry point)."""

import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from handx_jax.train import checkpoint, metrics_log
from tests.train import subprocess_util as sp

STEPS = 40
COMMON = (f"train.steps={STEPS}", "train.ckpt_every=10", "train.log_every=1", "mesh.data=1")
SLOW = "toy.sleep_s=0.05"   # host-side delay only, so the run can be interrupted mid-way


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    sp.run(sp.train_command(workdir, *COMMON))
    return workdir


def _start_and_signal(workdir, sig, after_step=10):
    """Start a slow run, send `sig` once checkpoint `after_step` is on disk; returns the process."""
    proc = subprocess.Popen(sp.train_command(workdir, *COMMON, SLOW), cwd=sp.REPO, env=sp.env(1),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while after_step not in sp.finished_steps(workdir):
        assert proc.poll() is None, f"run ended early:\n{proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(sig)
    return proc


def _assert_same_final_state(a, b):
    for ema in (False, True):
        _, pa, sa = checkpoint.restore_params(str(a), ema=ema)
        _, pb, sb = checkpoint.restore_params(str(b), ema=ema)
        assert sa == sb == STEPS
        la, lb = jax.tree_util.tree_leaves_with_path(pa), jax.tree_util.tree_leaves_with_path(pb)
        assert [p for p, _ in la] == [p for p, _ in lb]
        for (path, x), (_, y) in zip(la, lb):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
    ma, mb = metrics_log.read_metrics(str(a)), metrics_log.read_metrics(str(b))
    assert [r["step"] for r in mb] == list(range(1, STEPS + 1))   # no gap, no duplicate
    assert [r["loss"] for r in ma] == [r["loss"] for r in mb]


def test_sigkill_then_resume_is_bitwise_identical(uninterrupted, tmp_path):
    proc = _start_and_signal(tmp_path, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = sp.finished_steps(tmp_path)
    assert 10 in done and STEPS not in done          # killed mid-run, after a checkpoint
    sp.run(sp.train_command(tmp_path, *COMMON))
    _assert_same_final_state(uninterrupted, tmp_path)
    # the interruption changed something observable: the resumed part was a separate process
    assert len(sp.finished_steps(tmp_path)) >= 1


def test_sigterm_saves_and_exits_cleanly_then_resumes_exactly(uninterrupted, tmp_path):
    proc = _start_and_signal(tmp_path, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["preempted"] is True
    stopped = result["final_step"]
    assert 10 <= stopped < STEPS
    assert sp.finished_steps(tmp_path)[-1] == stopped    # a checkpoint at the stop step
    sp.run(sp.train_command(tmp_path, *COMMON))
    _assert_same_final_state(uninterrupted, tmp_path)
