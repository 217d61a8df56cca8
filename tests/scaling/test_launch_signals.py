"""The local launcher never leaves a stage running: a signal is passed on to the stage (whose
clean exit is not mistaken for a finished point), the stage's whole process group goes with
it, a stage whose launcher is SIGKILLed is stopped too, and a second launcher is refused."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from handx_jax.scaling import launch, sweeps
from handx_jax.train import run_lock

STAGE = textwrap.dedent("""\
    #!{python}
    # Stands in for `python -m handx_jax.cli`: shared stages succeed; a point's training
    # starts a grandchild, records both pids, and exits 0 on SIGTERM (as the trainer does).
    import json, os, signal, subprocess, sys, time
    argv = sys.argv[3:]
    if argv[0] != "train":
        sys.exit(0)
    child = subprocess.Popen(["sleep", "300"])
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with open(os.environ["FAKE_PIDS"] + ".tmp", "w") as f:
        json.dump({{"stage": os.getpid(), "grandchild": child.pid}}, f)
    os.replace(os.environ["FAKE_PIDS"] + ".tmp", os.environ["FAKE_PIDS"])
    time.sleep(300)
    """)
LAUNCHER = ("import sys\n"
            "from handx_jax.scaling import launch\n"
            "m = launch.read_manifest(sys.argv[1])\n"
            "try:\n"
            "    launch.run_local(m, python=sys.argv[2])\n"
            "except launch.StageInterrupted:\n"
            "    sys.exit(130)\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split()[2] != "Z"


def _wait(cond, timeout=60.0):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.fixture
def started(tmp_path):
    out = tmp_path / "sweep"
    manifest = launch.plan_sweep(sweeps.load_sweep("tiny"), str(out))
    manifest["data"]["synthetic"] = False
    launch.write_manifest(manifest)
    fake = tmp_path / "fake_python"
    fake.write_text(STAGE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    pids = tmp_path / "pids.json"
    env = {**os.environ, "FAKE_PIDS": str(pids)}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(out), str(fake)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(pids.exists)
    record = json.loads(pids.read_text())
    yield manifest, proc, record
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in record.values():  # the fake stage's grandchild outlives a SIGKILLed launcher
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigterm_stops_the_stage_and_its_group(started):
    manifest, proc, pids = started
    refused = subprocess.run([sys.executable, "-c", LAUNCHER, manifest["out"], sys.executable],
                             capture_output=True, text=True, timeout=60)
    assert isinstance(refused.returncode, int) and refused.returncode != 0
    assert "is in use by pid" in refused.stderr  # the sweep directory is locked by the first launcher
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert not _alive(pids["stage"]) and not _alive(pids["grandchild"])
    first = manifest["points"][0]["id"]
    assert launch.read_status(manifest["out"], first)["state"] == "interrupted"  # not "done"
    assert run_lock.read_holder(manifest["out"]) is None


def test_sigkill_of_the_launcher_stops_the_stage(started):
    manifest, proc, pids = started
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _wait(lambda: not _alive(pids["stage"]), timeout=30)
    # The point reads as interrupted (its launcher is gone), so a relaunch resumes it.
    assert launch.read_status(manifest["out"], manifest["points"][0]["id"])["state"] == "interrupted"
