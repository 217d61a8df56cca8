"""One writer per run directory: flock held for the life of the process, lease across hosts,
and two `handx train` started together on one workdir."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from handx_jax.train import metrics_log, run_lock
from tests.train import subprocess_util as sp

HOLD = ("import sys, time\n"
        "from handx_jax.train import run_lock\n"
        "run_lock.acquire(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")
TRY = ("import sys\n"
       "from handx_jax.train import run_lock\n"
       "try:\n"
       "    run_lock.acquire(sys.argv[1])\n"
       "except run_lock.RunLockedError as err:\n"
       "    print(err); sys.exit(run_lock.EXIT_LOCKED)\n"
       "print('acquired')\n")


def _try(directory) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY, str(directory)], capture_output=True, text=True,
                          env=sp.env(1), cwd=sp.REPO, timeout=60)


def test_second_process_is_refused_naming_the_holder_and_the_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=sp.env(1), cwd=sp.REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        record = run_lock.read_holder(str(tmp_path))
        assert record["pid"] == holder.pid and record["host"] and record["started"] and record["heartbeat"]
        refused = _try(tmp_path)
        assert refused.returncode == run_lock.EXIT_LOCKED
        assert f"pid {holder.pid} on host {record['host']}" in refused.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _try(tmp_path).stdout.strip() == "acquired"  # the kernel dropped the dead holder's lock


def test_reentrant_in_one_process_and_empty_after_release(tmp_path):
    with run_lock.hold(str(tmp_path)):
        with run_lock.hold(str(tmp_path)):
            assert run_lock.is_held(str(tmp_path))
        assert run_lock.is_held(str(tmp_path))
        assert _try(tmp_path).returncode == run_lock.EXIT_LOCKED
    assert not run_lock.is_held(str(tmp_path))
    assert run_lock.read_holder(str(tmp_path)) is None


def test_heartbeat_renews_the_lease(tmp_path):
    with run_lock.hold(str(tmp_path), lease=0.3):
        first = run_lock.read_holder(str(tmp_path))["heartbeat"]
        time.sleep(0.5)
        assert run_lock.read_holder(str(tmp_path))["heartbeat"] > first


def test_lease_of_another_host(tmp_path, capsys):
    """A flock does not always reach other hosts on a shared filesystem: a live lease written
    by another host refuses; an expired one is taken over with a message."""
    def stale(age):
        record = {"host": "node-elsewhere", "pid": 4242, "started": "then", "heartbeat": time.time() - age,
                  "lease": 60.0, "command": "handx train"}
        with open(run_lock.lock_path(str(tmp_path)), "w") as f:
            json.dump(record, f)

    stale(age=5)
    with pytest.raises(run_lock.RunLockedError, match="pid 4242 on host node-elsewhere.*renewed 5 s ago"):
        run_lock.acquire(str(tmp_path))
    stale(age=600)
    with run_lock.hold(str(tmp_path)):
        assert run_lock.read_holder(str(tmp_path))["pid"] == os.getpid()
    assert "taking over" in capsys.readouterr().err


def test_two_trainers_on_one_workdir(tmp_path):
    """Exactly one runs to the end; the other exits non-zero at once; metrics.jsonl is whole."""
    steps = 30
    cmd = sp.train_command(tmp_path, f"train.steps={steps}", "train.ckpt_every=10", "train.log_every=1",
                           "mesh.data=1", "toy.sleep_s=0.02")
    procs = [subprocess.Popen(cmd, cwd=sp.REPO, env=sp.env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    finished = {}
    deadline = time.time() + 300
    while len(finished) < 2 and time.time() < deadline:
        for i, p in enumerate(procs):
            if i not in finished and p.poll() is not None:
                finished[i] = time.time()
        time.sleep(0.05)
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, run_lock.EXIT_LOCKED], [o[1][-2000:] for o in outs]
    lost = [p.returncode for p in procs].index(run_lock.EXIT_LOCKED)
    assert finished[lost] < finished[1 - lost]  # refused at once, while the survivor still trains
    loser = outs[lost]
    assert "is in use by pid" in loser[1] and "Traceback" not in loser[1]
    assert [r["step"] for r in metrics_log.read_metrics(str(tmp_path))] == list(range(1, steps + 1))
    assert run_lock.read_holder(str(tmp_path)) is None
