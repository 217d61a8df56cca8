"""The SLURM backend against a real scheduler: a one-node cluster (munged, slurmctld, slurmd)
started on this machine from config files in a temporary directory, the tiny sweep
submitted through its generated `submit.sh` with 2 tasks per point and a few steps.

Needs Debian's `slurm-wlm` and `munge` (CI installs them where it can) and root (slurmd
runs jobs); skipped with the reason otherwise. Takes a few minutes.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from handx_jax.scaling import launch, sweeps

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel")
# Two of the tiny sweep's points (its smallest size at both data ratios): every path a point
# takes is exercised, at a third of the six points' scheduler time.
SWEEP = "configs/sweeps/tiny.py:steps=4,evaluator_steps=4,tower_steps=4,clips=32,replications=1,sizes=T1"
SWEEP_TIMEOUT_S = 900


def test_submit_script_creates_the_log_directories(tmp_path):
    """Without a scheduler: every directory an `#SBATCH --output` names is made by submit.sh
    and by the launcher, before anything is submitted."""
    manifest = launch.plan_sweep(sweeps.load_sweep(SWEEP), str(tmp_path / "sweep"))
    scripts = launch.slurm_scripts(manifest, tasks_per_node=2)
    logs = os.path.join(manifest["out"], "logs")
    assert launch.slurm_output_dirs(scripts) == {logs}
    submit = scripts["submit.sh"].splitlines()
    assert submit.index(f"mkdir -p {logs}") < next(i for i, s in enumerate(submit) if "sbatch" in s)
    from handx_jax import cli
    assert cli.main(["sweep", "launch", SWEEP, "--out", manifest["out"], "--backend", "slurm"]) == 0
    assert os.path.isdir(logs)


def _missing_reason() -> str | None:
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b) is None]
    if missing:
        return (f"SLURM not installed here (missing {', '.join(missing)}); .ci/run installs "
                "Debian's slurm-wlm and munge with apt-get where it can")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs; run as root (as .ci/run does in CI)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(root: str, host: str, munge_socket: str) -> str:
    cpus = max(4, os.cpu_count() or 1)  # 2 tasks per point + the next job's start
    return "\n".join([
        "ClusterName=handxtest", f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        f"PlugStackConfig={root}/plugstack.conf",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "MpiDefault=none", "SwitchType=switch/none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2",
        "SlurmdParameters=config_overrides",  # the node may claim more CPUs than it has
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ""])


def _stop(pid_file: str) -> None:
    """Stop the daemon whose pid this fixture's own config gave it (never by name)."""
    try:
        pid = int(open(pid_file).read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster on this machine; yields the environment its clients need."""
    reason = _missing_reason()
    if reason:
        pytest.skip(reason)
    root = str(tmp_path_factory.mktemp("slurm"))
    for sub in ("munge", "state", "spool", "log"):
        os.makedirs(os.path.join(root, sub))
    os.chmod(os.path.join(root, "munge"), 0o700)
    key = os.path.join(root, "munge", "munge.key")
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o400)
    munge_socket = os.path.join(root, "munge", "munge.sock")
    host = socket.gethostname().split(".")[0]
    conf = os.path.join(root, "slurm.conf")
    with open(conf, "w") as f:
        f.write(_slurm_conf(root, host, munge_socket))
    open(os.path.join(root, "plugstack.conf"), "w").close()
    # Jobs inherit this environment: not the test session's 8 fake CPU devices per process.
    xla_flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                         if not f.startswith("--xla_force_host_platform_device_count"))
    env = {**os.environ, "SLURM_CONF": conf, "XLA_FLAGS": xla_flags}
    pid_files = [os.path.join(root, "munge", "munged.pid"), os.path.join(root, "slurmctld.pid"),
                 os.path.join(root, "slurmd.pid")]
    try:
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={munge_socket}",
                        f"--pid-file={pid_files[0]}", f"--log-file={root}/log/munged.log",
                        f"--seed-file={root}/munge/munge.seed"], check=True, timeout=30)
        subprocess.run(["slurmctld", "-c", "-f", conf], check=True, env=env, timeout=30)
        subprocess.run(["slurmd", "-f", conf], check=True, env=env, timeout=30)
        state = ""
        for _ in range(120):
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                   env=env, timeout=30).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = {name: open(os.path.join(root, "log", name)).read()[-1500:]
                    for name in os.listdir(os.path.join(root, "log"))}
            pytest.fail(f"the test cluster's node never became idle (state {state!r}): {logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--quiet", f"--partition=debug"], env=env,
                       capture_output=True, timeout=30)
        for pid_file in reversed(pid_files):
            _stop(pid_file)


def _wait_for_queue(env: dict, timeout: float) -> str:
    """Poll squeue until no job is left; the last non-empty listing (for messages)."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        listing = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True,
                                 text=True, env=env, timeout=30).stdout.strip()
        if not listing:
            return last
        if "DependencyNeverSatisfied" in listing:
            pytest.fail(f"a job waits on a failed dependency: {listing}")
        last = listing
        time.sleep(2)
    pytest.fail(f"the sweep did not finish in {timeout:.0f} s; still queued: {last}")


def test_tiny_sweep_through_real_slurm(slurm_cluster, tmp_path):
    env = slurm_cluster
    out = str(tmp_path / "sweep")  # a fresh directory: the first submission must work
    start = time.monotonic()
    launched = subprocess.run([sys.executable, "-m", "handx_jax.cli", "sweep", "launch", SWEEP,
                               "--out", out, "--backend", "slurm", "--tasks-per-node", "2",
                               "--time", "00:15:00"], env=env, timeout=300,
                              capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr
    submitted = subprocess.run(["bash", os.path.join(out, "slurm", "submit.sh")], env=env,
                               capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    _wait_for_queue(env, SWEEP_TIMEOUT_S)
    rows = launch.sweep_status(out)
    logs = os.path.join(out, "logs")
    assert rows and all(r["state"] == "done" for r in rows), (
        rows, {f: open(os.path.join(logs, f)).read()[-2000:] for f in sorted(os.listdir(logs))})
    manifest = launch.read_manifest(out)
    assert len(rows) == len(manifest["points"]) == 2
    for point in manifest["points"]:
        run = point["workdir"]
        steps = sorted(int(s) for s in os.listdir(os.path.join(run, "checkpoints")) if s.isdigit())
        last = steps[-1]
        assert last == point["steps"]
        for process in (0, 1):  # both JAX processes kept their input position
            path = os.path.join(run, "iterator_states", f"step_{last}_process_{process}.json")
            with open(path) as f:
                assert json.load(f)["process_count"] == 2
        with open(os.path.join(run, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
        assert any(k.startswith("eval/") for r in records for k in r), run
    print(f"real-SLURM tiny sweep: {time.monotonic() - start:.0f} s", file=sys.stderr)
