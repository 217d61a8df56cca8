"""Sweep points are keyed by a hash of their resolved config: a changed point is a new point,
a relaunch runs exactly the changed points, and status lists the points left stale."""

import dataclasses
import stat
import sys

from handx_jax.scaling import launch, progress, sweeps
from tests.scaling.test_launch import FAKE_HANDX


def _sweep(changed_steps: dict[str, int] | None = None):
    sweep = sweeps.load_sweep("tiny:steps=300")
    changed_steps = changed_steps or {}
    sweep.points = [dataclasses.replace(p, steps=changed_steps.get(p.point_id, p.steps)) for p in sweep.points]
    return sweep


def _plan(out, sweep):
    manifest = launch.plan_sweep(sweep, str(out))
    manifest["data"]["synthetic"] = False  # the fake stages need no dataset
    launch.write_manifest(manifest)
    return manifest


def test_hash_follows_the_resolved_config_only(tmp_path):
    a = launch.plan_sweep(_sweep(), str(tmp_path / "a"))
    again = launch.plan_sweep(_sweep(), str(tmp_path / "a"))
    moved = launch.plan_sweep(_sweep(), str(tmp_path / "elsewhere"))
    assert [p["id"] for p in a["points"]] == [p["id"] for p in again["points"]] == [p["id"] for p in moved["points"]]
    for p in a["points"]:
        assert p["id"] == f"{p['name']}-{p['config_hash'][:launch.KEY_CHARS]}"
        assert p["workdir"].endswith(f"/runs/{p['id']}")
    changed = launch.plan_sweep(_sweep({"diffusion-T1-d1-s0": 400}), str(tmp_path / "a"))
    differ = [p["name"] for p, q in zip(a["points"], changed["points"]) if p["id"] != q["id"]]
    assert differ == ["diffusion-T1-d1-s0"]


def test_relaunch_with_more_steps_runs_exactly_the_changed_points(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_HANDX.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))

    first = _plan(out, _sweep())
    assert launch.run_local(first, python=str(fake))["done"] == 6
    calls.write_text("")
    changed = {"diffusion-T-d0.25-s0": 400, "diffusion-T3-d1-s0": 400}
    second = _plan(out, _sweep(changed))
    assert launch.run_local(second, python=str(fake))["done"] == 6
    trained = [line for line in calls.read_text().splitlines() if line.startswith("train ")]
    assert len(trained) == 2
    new_ids = {p["id"] for p in second["points"] if p["name"] in changed}
    old_ids = {p["id"] for p in first["points"] if p["name"] in changed}
    assert new_ids.isdisjoint(old_ids)

    rows = {r["id"]: r for r in launch.sweep_status(str(out))}
    assert {i for i, r in rows.items() if r["state"] == "stale"} == old_ids
    assert all(rows[i]["state"] == "done" for i in new_ids)
    state = progress.sweep_progress(str(out))
    assert {r["id"] for r in state["stale"]} == old_ids and state["counts"]["done"] == 6
    text = progress.format_progress(state)
    assert "stale" in text and all(i in text for i in old_ids)
