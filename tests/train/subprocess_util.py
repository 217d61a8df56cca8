"""Helpers to run the trainer in subprocesses with a chosen number of fake CPU devices."""

import os
import subprocess
import sys

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
