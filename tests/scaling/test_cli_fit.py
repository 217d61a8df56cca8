"""`handx scaling fit` end to end on synthetic run directories: fits.json, CSV, Markdown, plots."""

import json
import os

import numpy as np

from handx_jax import cli
from handx_jax.scaling import runs as runs_lib


def _sweep(root, rng):
    """A 4 x 3 grid of sizes and data ratios whose metrics follow known laws."""
    sizes = {"XS": 4.6e6, "S": 2.6e7, "M": 3.9e7, "L": 2.6e8}
    for name, n in sizes.items():
        for ratio in (0.05, 0.2, 1.0):
            d = ratio * 4096
            flops = 6 * n * 64 * 2000
            r3 = 0.4391 * np.log10(flops) - 3.8707 + rng.normal(0, 0.01)
            fid = 0.8 + 3e3 * n**-0.5 + 40 * d**-0.6 + rng.normal(0, 0.003)
            runs_lib.write_synthetic_run(os.path.join(root, f"diffusion-{name}-d{ratio:g}"), size=name,
                                         params=n, flops=flops, samples=64 * 2000, data_ratio=ratio,
                                         metrics={"R@3": r3, "FID": fid})


def test_fit_loglinear_writes_everything(tmp_path):
    _sweep(tmp_path / "runs", np.random.default_rng(0))
    out = tmp_path / "fit"
    rc = cli.main(["scaling", "fit", str(tmp_path / "runs"), "--metric", "R@3", "--x", "flops",
                   "--form", "loglinear", "--out", str(out), "--bootstrap", "100"])
    assert rc == 0
    fits = json.loads((out / "fits.json").read_text())
    assert fits["form"] == "loglinear" and fits["metric"] == "R@3" and fits["x"] == "flops"
    assert fits["n_runs"] == 12
    assert abs(fits["params"]["a"] - 0.4391) < 0.03
    low, high = fits["ci95"]["a"]
    assert low < fits["params"]["a"] < high
    assert fits["r"] > 0.95
    assert set(fits["flags"]) >= {"outliers", "saturated"}
    csv_lines = (out / "fits.csv").read_text().splitlines()
    assert csv_lines[0].startswith("form,metric,x,param")
    assert any(line.split(",")[3] == "a" for line in csv_lines[1:])
    assert "| a |" in (out / "fits.md").read_text()
    for ext in ("png", "pdf"):
        assert (out / f"fits.{ext}").stat().st_size > 1000


def test_fit_power2d_and_isoflop_through_cli(tmp_path):
    _sweep(tmp_path / "runs", np.random.default_rng(1))
    out = tmp_path / "p2"
    rc = cli.main(["scaling", "fit", str(tmp_path / "runs"), "--metric", "FID", "--x", "params",
                   "--form", "power2d", "--out", str(out), "--bootstrap", "50"])
    assert rc == 0
    fits = json.loads((out / "fits.json").read_text())
    # D comes from data ratio x num_synthetic_clips (4096) in each config.json.
    assert abs(fits["params"]["beta"] / 0.6 - 1) < 0.1
    assert (out / "fits.png").exists() and (out / "fits.pdf").exists()

    # Wrong x for power2d is a clear error, not a crash.
    assert cli.main(["scaling", "fit", str(tmp_path / "runs"), "--metric", "FID", "--x", "flops",
                     "--form", "power2d", "--out", str(out)]) == 1
    # A metric no run logged is a clear error.
    assert cli.main(["scaling", "fit", str(tmp_path / "runs"), "--metric", "nope", "--out", str(out)]) == 1


def test_isoflop_cli(tmp_path):
    rng = np.random.default_rng(2)
    a, b = 0.34, 0.28
    for budget in (1e15, 1e16, 1e17):
        n_opt = (a * 400 / (b * 410)) ** (1 / (a + b)) * (budget / 6) ** (b / (a + b))
        for i, n in enumerate(n_opt * np.logspace(-0.8, 0.8, 5)):
            loss = 1.7 + 400 * n**-a + 410 * (budget / (6 * n)) ** -b + rng.normal(0, 0.003)
            runs_lib.write_synthetic_run(str(tmp_path / "runs" / f"c{budget:.0e}-{i}"), size=f"N{i}",
                                         params=n, flops=budget * (1 + 0.01 * i), samples=1e6,
                                         metrics={"loss": loss})
    out = tmp_path / "iso"
    assert cli.main(["scaling", "fit", str(tmp_path / "runs"), "--metric", "loss", "--x", "params",
                     "--form", "isoflop", "--out", str(out), "--bootstrap", "100"]) == 0
    fits = json.loads((out / "fits.json").read_text())
    assert abs(fits["params"]["a"] / (b / (a + b)) - 1) < 0.05
    assert len(fits["extra"]["budgets"]) == 3 and fits["extra"]["goal"] == "min"
    assert (out / "fits.png").exists()


def test_runs_reader_tolerates_a_cut_last_line_and_names_bad_files(tmp_path):
    path = runs_lib.write_synthetic_run(str(tmp_path / "r"), size="S", params=1e6, flops=1e12,
                                        samples=1e4, metrics={"R@3": 0.3})
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write('{"step": 3, "loss": 0.')  # a run killed mid-write
    run = runs_lib.load_run(path)
    assert run.metric("R@3") == 0.3 and run.x_value("flops") == 1e12
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write('\n{"step": 4}\n')
    try:
        runs_lib.load_run(path)
    except ValueError as err:
        assert "metrics.jsonl: line 4" in str(err)
    else:
        raise AssertionError("a corrupt line inside the log must be an error")


def test_runs_reader_takes_the_highest_step_not_the_last_line(tmp_path):
    """Evaluating an earlier checkpoint after the final one appends an older eval line; the
    run's scaling point must stay at its final step."""
    path = runs_lib.write_synthetic_run(str(tmp_path / "r"), size="S", params=1e6, flops=1e12,
                                        samples=1e4, metrics={"R@3": 0.3, "FID": 1.0})
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": 1, "eval/R@3": 0.1}) + "\n")  # checkpoint 1, evaluated later
        f.write(json.dumps({"step": 2, "eval/FID": 0.9}) + "\n")  # step 2 evaluated again
    run = runs_lib.load_run(path)
    assert run.metric("R@3") == 0.3
    assert run.metric("FID") == 0.9  # equal steps: the later line wins
