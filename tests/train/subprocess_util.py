"""Helpers to run the trainer in subprocesses with a chosen number of fake CPU devices."""

import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO, "tests", "train", "toy_config.py")


def env(devices: int = 1) -> dict:
    out = dict(os.environ)
    out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out["JAX_PLATFORMS"] = "cpu"
    out["PYTHONPATH"] = REPO + os.pathsep + out.get("PYTHONPATH", "")
    cache = os.environ.get("HANDX_TEST_XLA_CACHE")
    if cache:
        out["HANDX_COMPILE_CACHE"] = cache
    return out


def train_command(workdir: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "handx_jax.commands.train", "--config", TOY_CONFIG,
            "--workdir", str(workdir), *[f"--config.{o}" for o in overrides]]


def run(cmd: list[str], devices: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=env(devices), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def finished_steps(workdir: str) -> list[int]:
    d = os.path.join(str(workdir), "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def kill_after_checkpoint(cmd: list[str], workdir: str, *, step: int = 10, last_step: int,
                          timeout: float = 300, poll: float = 0.005) -> None:
    """Start `cmd`, SIGKILL it as soon as checkpoint `step` is finished, and check that it
    died mid-run (checkpoint `last_step` never written)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while step not in finished_steps(workdir):
        assert proc.poll() is None, f"run ended early:\n{proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert last_step not in finished_steps(workdir)  # killed mid-run, after a checkpoint

