"""Sweep planning, the local backend's resume logic, SLURM/TPU scripts and SLURM wiring."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from handx_jax.scaling import launch, sweeps

FAKE_SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NODELIST": "gpu[007-009,012],cpu3",
    "SLURM_STEP_NODELIST": "gpu[007-008]",
    "SLURM_NTASKS": "16",
    "SLURM_PROCID": "5",
}


def test_expand_hostlist():
    assert launch.expand_hostlist("gpu[007-009,012],cpu3") == ["gpu007", "gpu008", "gpu009", "gpu012", "cpu3"]
    assert launch.expand_hostlist("node1") == ["node1"]
    assert launch.expand_hostlist("r[1-2]-n[01-02]") == ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]
    with pytest.raises(ValueError):
        launch.expand_hostlist("")


def test_distributed_env_from_slurm():
    dist = launch.distributed_env_from_slurm(FAKE_SLURM)
    # The step's node list wins over the job's; port = 20000 + job id.
    assert dist == {"coordinator_address": "gpu007:24242", "num_processes": 16, "process_id": 5}
    env = dict(FAKE_SLURM, HANDX_COORDINATOR_PORT="12345")
    del env["SLURM_STEP_NODELIST"]
    assert launch.distributed_env_from_slurm(env)["coordinator_address"] == "gpu007:12345"
    assert launch.distributed_env_vars(dist) == {
        "HANDX_DISTRIBUTED": "1", "JAX_COORDINATOR_ADDRESS": "gpu007:24242",
        "JAX_NUM_PROCESSES": "16", "JAX_PROCESS_ID": "5"}
    with pytest.raises(ValueError, match="SLURM_PROCID"):
        launch.distributed_env_from_slurm({k: v for k, v in FAKE_SLURM.items() if k != "SLURM_PROCID"})
    with pytest.raises(ValueError, match="outside"):
        launch.distributed_env_from_slurm(dict(FAKE_SLURM, SLURM_PROCID="16"))


def test_slurm_env_exports_reach_the_trainer_variables():
    """`slurm-env` prints exports that bash evaluates into the variables the trainer reads."""
    env = {**os.environ, **FAKE_SLURM}
    script = (f'eval "$({sys.executable} -m handx_jax.scaling.launch slurm-env)"; '
              'echo "$JAX_COORDINATOR_ADDRESS $JAX_NUM_PROCESSES $JAX_PROCESS_ID $HANDX_DISTRIBUTED"')
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["gpu007:24242", "16", "5", "1"]


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return launch.plan_sweep(sweeps.load_sweep("tiny"), str(out))


def test_tiny_plan(tiny_manifest):
    points = tiny_manifest["points"]
    assert len(points) == 6
    assert {p["size"] for p in points} == {"T1", "T", "T3"}
    assert {p["data"] for p in points} == {0.25, 1.0}
    assert len({p["workdir"] for p in points}) == 6
    for p in points:
        assert p["train"][:3] == ["train", "--config", f"configs/diffusion.py:size=T,data={p['data']:g},runlocal"]
        assert f"--config.train.steps={p['steps']}" in p["train"]
        assert f"--config.data.dir={tiny_manifest['data']['dir']}" in p["train"]
        assert p["evaluate"][:2] == ["evaluate", "--workdir"]
        # Every point is conditioned on the sweep's one frozen text tower.
        assert f"--config.model.text_tower={tiny_manifest['text_tower']['workdir']}" in p["train"]
        assert "--config.model.text_embed_dim=64" in p["train"]
    assert tiny_manifest["evaluator"]["train"][:2] == ["evaluator", "train"]
    tower = tiny_manifest["text_tower"]["train"]
    assert tower[:2] == ["text", "tower"] and tower[tower.index("--data") + 1] == tiny_manifest["data"]["dir"]


def test_slurm_scripts_pass_bash_n(tiny_manifest, tmp_path):
    scripts = launch.slurm_scripts(tiny_manifest, nodes=2, tasks_per_node=4, gpus_per_node=4,
                                   partition="gpu", max_parallel=3, setup="source venv/bin/activate")
    assert "#SBATCH --array=0-5%3" in scripts["sweep.sbatch"]
    assert "--slurm" in scripts["sweep.sbatch"] and "srun" in scripts["sweep.sbatch"]
    assert "--dependency=afterok" in scripts["submit.sh"]
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    broken = tmp_path / "broken.sh"
    broken.write_text(scripts["sweep.sbatch"] + "\nif then\n")
    assert subprocess.run(["bash", "-n", str(broken)], capture_output=True).returncode != 0


def test_tpu_script(tiny_manifest, tmp_path):
    text = launch.tpu_script(tiny_manifest, tpu_name="pod-v4-32", zone="us-central2-b", project="proj")
    assert text.count("--worker=all --command=") == 1 + len(tiny_manifest["points"])
    assert "--project=proj" in text
    path = tmp_path / "tpu.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_every_sweep_config_plans(tmp_path):
    for name, count in (("paper_table2", 12), ("fig4_flops", 12), ("tiny", 6), ("cpu_isoflop", 21),
                        ("cpu_quality", 6)):
        manifest = launch.plan_sweep(sweeps.load_sweep(name), str(tmp_path / name))
        assert len(manifest["points"]) == count, name
        assert all(p["steps"] > 0 for p in manifest["points"])
    table2 = launch.plan_sweep(sweeps.load_sweep("paper_table2:sizes=XS/L,seeds=2"), str(tmp_path / "x"))
    assert {(p["size"], p["data"]) for p in table2["points"]} == {
        (s, r) for s in ("XS", "L") for r in (0.05, 0.2, 1.0)}
    assert len(table2["points"]) == 12


def test_compute_budget_sets_steps():
    sweep = sweeps.load_sweep("tiny")
    point = sweeps.ScalePoint(family="diffusion", size="T", data=0.2, compute_budget=3e12)
    config = sweeps.point_config(sweep, point)
    steps = sweeps.resolve_steps(sweep, point, config)
    per_step = sweeps.train_flops_per_example(config) * config.train.batch_size
    assert (steps - 1) * per_step < 3e12 <= steps * per_step
    with pytest.raises(ValueError, match="exactly one"):
        sweeps.ScalePoint(family="diffusion", size="T", data=0.2, steps=5, compute_budget=1e12)
    with pytest.raises(ValueError, match="data="):
        sweeps.ScalePoint(family="diffusion", size="T", data=1.5, steps=5)


FAKE_HANDX = textwrap.dedent("""\
    #!{python}
    # Stands in for `python -m handx_jax.cli`: records the call, writes a run's files.
    import json, os, sys
    argv = sys.argv[3:]
    stage = argv[0]
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(" ".join(argv[:2]) + "\\n")
    workdir = argv[argv.index("--workdir") + 1]
    if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in workdir:
        sys.exit(3)
    os.makedirs(workdir, exist_ok=True)
    if stage == "train":
        json.dump({{"size": "T", "data": {{"ratio": 1.0}}}}, open(os.path.join(workdir, "config.json"), "w"))
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({{"step": 4, "loss": 0.5, "params": 1000, "flops_seen": 1e9}}) + "\\n")
    elif stage == "evaluate":
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({{"step": 4, "eval/R@3": 0.25, "eval/FID": 3.0}}) + "\\n")
    """)


def test_local_backend_skips_done_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    manifest = launch.plan_sweep(sweeps.load_sweep("tiny"), str(out))
    manifest["data"]["synthetic"] = False  # the fake stages need no dataset
    launch.write_manifest(manifest)
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_HANDX.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_FAIL", "T3-d1-")

    counts = launch.run_local(manifest, python=str(fake))
    assert counts["done"] == 5 and counts["failed"] == 1
    first = calls.read_text().splitlines()
    assert first[0] == "evaluator train" and first[1] == "text tower"  # shared stages before the points
    assert first.count("train --config") == 6 and first.count("evaluate --workdir") == 5
    ids = {p["name"]: p["id"] for p in manifest["points"]}  # id: name plus config hash
    rows = {r["id"]: r for r in launch.sweep_status(str(out))}
    assert rows[ids["diffusion-T3-d1-s0"]]["state"] == "failed"
    assert "train rc=3" in rows[ids["diffusion-T3-d1-s0"]]["detail"]
    assert rows[ids["diffusion-T-d1-s0"]]["state"] == "done"
    assert rows[ids["diffusion-T-d1-s0"]]["eval"]["R@3"] == 0.25
    assert os.path.isfile(out / "logs" / f"{ids['diffusion-T3-d1-s0']}.train.log")

    # A point left `running` by a launcher that died reads as interrupted.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status = json.loads((out / "status" / f"{ids['diffusion-T-d0.25-s0']}.json").read_text())
    status.update(state="running", pid=dead.pid)
    (out / "status" / f"{ids['diffusion-T-d0.25-s0']}.json").write_text(json.dumps(status))
    assert launch.read_status(str(out), ids["diffusion-T-d0.25-s0"])["state"] == "interrupted"

    # Relaunch: only the failed and the interrupted points run again; the evaluator is done.
    calls.write_text("")
    monkeypatch.delenv("FAKE_FAIL")
    counts = launch.run_local(manifest, python=str(fake))
    assert counts["done"] == 6 and counts["failed"] == 0
    again = calls.read_text().splitlines()
    assert again.count("train --config") == 2 and "evaluator train" not in again and "text tower" not in again
    text = launch.format_status(launch.sweep_status(str(out)))
    assert "6 done (of 6)" in text


def test_sweep_commands(tmp_path, capsys):
    from handx_jax import cli

    out = tmp_path / "t"
    assert cli.main(["sweep", "launch", "tiny", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("handx train --config configs/diffusion.py:size=T") == 6
    assert not out.exists()  # a dry run writes nothing
    assert cli.main(["sweep", "launch", "tiny", "--out", str(out), "--backend", "slurm"]) == 0
    assert sorted(os.listdir(out / "slurm")) == ["evaluator.sbatch", "submit.sh", "sweep.sbatch"]
    capsys.readouterr()
    assert cli.main(["sweep", "status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "evaluator: pending" in printed and "6 pending (of 6)" in printed
    assert cli.main(["sweep", "launch", "no_such_sweep", "--out", str(out)]) == 1


def test_table3_plan_trains_one_tokenizer_per_codebook(tmp_path):
    """Autoregressive points of a codebook read that codebook's tokenizer, a shared stage."""
    manifest = launch.plan_sweep(sweeps.load_sweep("paper_table3:sizes=T/8x512,codebooks=512/1024,steps=5"),
                                 str(tmp_path / "t3"))
    assert sorted(manifest["fsq"]) == ["1024", "512"]
    for codebook, entry in manifest["fsq"].items():
        assert entry["workdir"] == sweeps.fsq_dir(str(tmp_path / "t3"), int(codebook))
        assert f"codebook={codebook}" in entry["train"][2]
    assert len(manifest["points"]) == 4
    for point in manifest["points"]:
        codebook = point["name"].split("-cb")[1].split("-")[0]
        assert f",codebook={codebook}" in point["train"][2]
        assert f"--config.model.fsq_workdir={manifest['fsq'][codebook]['workdir']}" in point["train"]
        assert any(a.startswith("--config.model.text_tower=") for a in point["train"])
    assert launch.stale_points(manifest) == []

