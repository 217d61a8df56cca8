"""Two JAX processes on CPU (gloo collectives, 2 fake devices each) train as one job: a run
killed after a checkpoint and resumed by two new processes ends bit-identical to an
uninterrupted one, each process picking up its own data position; one process cannot
resume a two-process checkpoint."""

import os
import signal
import socket
import subprocess
import time

import pytest

from handx_jax.train import checkpoint
from tests.train import subprocess_util as sp
from tests.train.test_resume import _assert_same_final_state, STEPS

COMMON = (f"train.steps={STEPS}", "train.ckpt_every=10", "train.log_every=1", "mesh.data=-1",
          "train.batch_size=8")
SLOW = "toy.sleep_s=0.05"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, *extra, processes=2):
    port = _free_port()
    procs = []
    for i in range(processes):
        env = sp.env(2)
        env.update(HANDX_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(sp.train_command(workdir, *COMMON, *extra), cwd=sp.REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs, timeout=240):
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


def _wait_for_checkpoint(procs, workdir, step, timeout=240):
    deadline = time.time() + timeout
    while step not in sp.finished_steps(workdir):
        assert all(p.poll() is None for p in procs), "a process ended before the checkpoint"
        assert time.time() < deadline, f"no checkpoint {step} appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_processes")
    _finish(_start(workdir))
    return workdir


def test_two_processes_kill_then_resume_is_bitwise_identical(uninterrupted, tmp_path):
    procs = _start(tmp_path, SLOW)
    _wait_for_checkpoint(procs, tmp_path, 10)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
    assert STEPS not in sp.finished_steps(tmp_path)
    sides = sorted(os.listdir(os.path.join(tmp_path, "iterator_states")))
    assert {"step_10_process_0.json", "step_10_process_1.json"} <= set(sides)
    _finish(_start(tmp_path))
    _assert_same_final_state(uninterrupted, tmp_path)


def test_one_process_refuses_a_two_process_checkpoint(uninterrupted):
    trainer_cmd = sp.train_command(uninterrupted, *COMMON, f"train.steps={STEPS + 10}")
    proc = subprocess.run(trainer_cmd, cwd=sp.REPO, env=sp.env(4), capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "written by 2 processes" in proc.stderr and "same number of processes" in proc.stderr
    assert checkpoint.all_steps(str(uninterrupted))[-1] == STEPS  # nothing new was written


def test_sigterm_to_one_process_stops_both_at_one_step_then_resumes_exactly(uninterrupted, tmp_path):
    """A preemption notice reaches one task: both must stop at the same step (else the next
    collective hangs), save one checkpoint there, exit cleanly, and resume exactly."""
    import json

    procs = _start(tmp_path, SLOW)
    _wait_for_checkpoint(procs, tmp_path, 10)
    procs[1].send_signal(signal.SIGTERM)
    finals = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["preempted"] is True
        finals.append(result["final_step"])
    assert finals[0] == finals[1] and 10 <= finals[0] < STEPS
    assert sp.finished_steps(tmp_path)[-1] == finals[0]
    _finish(_start(tmp_path))
    _assert_same_final_state(uninterrupted, tmp_path)
