"""`handx sweep status`: stage, step / total, losses, elapsed and time left per point."""

import datetime
import io
import json
import os

import pytest

from handx_jax import cli
from handx_jax.scaling import launch, progress, sweeps


def _write_lines(workdir, lines):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in lines)


@pytest.fixture
def sweep_dir(tmp_path):
    """A tiny sweep: one point done in 100 s, one training (step 400 of 1000), the rest pending."""
    manifest = launch.plan_sweep(sweeps.load_sweep("tiny:steps=1000"), str(tmp_path / "sweep"))
    launch.write_manifest(manifest)
    out, now = manifest["out"], 1.9e9
    done, running = manifest["points"][0], manifest["points"][1]
    launch.write_status(out, launch.EVALUATOR_ID, "done")
    launch.write_status(out, done["id"], "done", seconds=100.0)
    _write_lines(done["workdir"], [{"step": 1000, "loss": 0.25, "step_time": 0.1, "wall_time": now - 500},
                                   {"step": 1000, "eval/R@3": 0.5, "eval/FID": 2.0, "eval/loss": 0.75}])
    launch.write_status(out, running["id"], "running", stage="train")  # this process: alive
    _write_lines(running["workdir"], [{"step": s, "loss": 1.0 / s, "step_time": 0.5, "wall_time": now - 2 - (400 - s) * 0.5}
                                      for s in (100, 200, 300, 400)])
    return out, now, manifest


def test_progress_rows_and_estimates(sweep_dir):
    out, now, manifest = sweep_dir
    state = progress.sweep_progress(out, now=now)
    rows = {r["id"]: r for r in state["points"]}
    done, running, pending = (rows[p["id"]] for p in manifest["points"][:3])
    assert (done["state"], done["step"], done["loss"], done["eval_loss"], done["elapsed_seconds"]) == \
        ("done", 1000, 0.25, 0.75, 100.0)
    assert (running["stage"], running["step"], running["steps"], running["loss"]) == ("train", 400, 1000, 1 / 400)
    assert running["eta_seconds"] == pytest.approx(600 * 0.5 - 2)  # steps left x step time, less time since the log
    assert running["elapsed_seconds"] == pytest.approx(300 * 0.5 + 100 * 0.5)
    assert pending["state"] == "pending" and pending["eta_seconds"] == pytest.approx(100.0)  # 0.1 s/step from the done point
    assert state["eta_seconds"] == pytest.approx(298 + 4 * 100.0)
    text = progress.format_progress(state)
    assert "evaluator: done" in text
    line = next(l for l in text.splitlines() if l.startswith(running["id"]))
    assert "400/1000" in line and "0.0025" in line and "4m58s" in line and "3m20s" in line
    assert text.splitlines()[-1] == "4 pending, 1 running, 1 done (of 6); about 11m38s left"


def test_status_command_json_and_watch(sweep_dir, capsys):
    out, _, manifest = sweep_dir
    assert cli.main(["sweep", "status", out, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["state"] for p in printed["points"]][:2] == ["done", "running"]
    assert printed["points"][1]["step"] == 400
    stream = io.StringIO()
    assert progress.watch(out, interval=0.01, stream=stream, max_updates=2) == 0
    assert stream.getvalue().count("evaluator: done") == 2  # redrawn
    for point in manifest["points"]:
        launch.write_status(out, point["id"], "done", seconds=1.0)
    stream = io.StringIO()
    assert progress.watch(out, interval=60, stream=stream) == 0  # all done: returns at once
    assert "6 done (of 6)" in stream.getvalue()


def test_format_duration():
    assert [progress.format_duration(s) for s in (None, 5, 65, 3600 * 2 + 61)] == ["-", "5s", "1m05s", "2h01m"]
