"""`handx report`: self-contained HTML of a run and of a sweep, opened in headless Chromium."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from handx_jax import cli
from handx_jax.data import store
from handx_jax.eval import report as eval_report
from handx_jax.report import browser, html
from handx_jax.scaling import launch, runs, sweeps
from tests.viz._motion import clips_with_contact


def _run_dir(tmp_path) -> str:
    """A run as training, evaluation and sampling leave it (short, made by hand)."""
    run = str(tmp_path / "run")
    os.makedirs(os.path.join(run, "eval"))
    config = {"task": "handx_jax.diffusion.task:DiffusionTask", "size": "T", "train": {"steps": 40, "batch_size": 8}}
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        for step in range(2, 41, 2):
            f.write(json.dumps({"step": step, "loss": 2.0 / step, "loss_vel": 0.1 / step, "lr": 1e-3, "grad_norm": 1.5,
                                "params": 101288, "flops_seen": 1e9 * step, "step_time": 0.2}) + "\n")
    result = {"rows": {"ground truth": {"R@3": eval_report.summarize([0.9, 0.92])},
                       "diffusion T, step 40": {"R@3": eval_report.summarize([0.5, 0.52]),
                                                "FID": eval_report.summarize([3.0, 3.2])}},
              "meta": {"replications": 2, "num_samples": 32}, "sanity": {"contact_f1_self": 1.0}}
    eval_report.write_json(os.path.join(run, "eval", "metrics.json"), result)
    clips = {k: {**c, "motion": c["motion"][:5]} for k, c in clips_with_contact(2).items()}
    store.save_clips(str(tmp_path / "samples.clips.npz"), clips)
    return run


def _external_references(text: str) -> list[str]:
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    return [r for r in refs if not r.startswith("data:")] + re.findall(r"https?://", text)


def test_run_report_embeds_curves_eval_table_and_renders(tmp_path, capsys):
    run = _run_dir(tmp_path)
    assert cli.main(["report", run, "--samples", str(tmp_path / "samples.clips.npz"), "--num-renders", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run}/report.html"
    text = open(os.path.join(run, "report.html")).read()
    assert "0.510 ± 0.014" in text and "3.100 ± 0.139" in text  # mean ± 1.96 std / sqrt(2) (population std)
    assert "the hands touch at the fingertips 0" in text  # the render's prompt
    assert text.count("data:image/png;base64,") == 1 and text.count("data:image/gif;base64,") == 1
    assert "contact_f1_self" in text and "101288" in text
    assert _external_references(text) == []  # self-contained
    assert os.path.isfile(os.path.join(run, "renders", "clip_0000.gif"))


def _sweep_dir(tmp_path) -> str:
    manifest = launch.plan_sweep(sweeps.load_sweep("tiny:steps=2"), str(tmp_path / "sweep"))
    launch.write_manifest(manifest)
    for i, point in enumerate(manifest["points"]):
        flops = 1e9 * 2 ** i
        runs.write_synthetic_run(point["workdir"], size=point["size"], params=1e5 * (i + 1), flops=flops,
                                 samples=1e4, metrics={"R@3": 0.2 + 0.05 * np.log2(flops / 1e9), "FID": 5.0 - i},
                                 eval_ci95={"R@3": 0.01})
        launch.write_status(manifest["out"], point["id"], "done", seconds=10.0 + i)
    return manifest["out"]


def test_sweep_report_fits_and_tables(tmp_path):
    sweep = _sweep_dir(tmp_path)
    path = html.write_sweep_report(sweep)
    text = open(path).read()
    assert os.path.isfile(os.path.join(sweep, "scaling", "fit_flops_R3.json"))  # fitted for the report
    assert "loglinear fit of R@3 against flops (6 runs)" in text
    assert "0.45 ± 0.01" in text  # the largest point's R@3 with its interval
    assert text.count("data:image/png;base64,") == 2  # loss curves, fit plot
    assert _external_references(text) == []


def test_report_refuses_other_directories(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "neither a sweep directory" in capsys.readouterr().err


@pytest.mark.skipif(browser.find_browser() is None,
                    reason="needs Chromium (.ci/run installs Debian's chromium; apt-get install chromium)")
def test_reports_open_in_headless_chromium_without_console_errors(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    messages = browser.screenshot(str(broken), str(tmp_path / "broken.png"), width=400, height=300)
    assert any("undefinedFunction is not defined" in m for m in messages)  # the check can fail
    run = _run_dir(tmp_path)
    html.write_run_report(run, samples=str(tmp_path / "samples.clips.npz"), num_renders=1)
    shot = str(tmp_path / "run_report.png")
    assert browser.screenshot(os.path.join(run, "report.html"), shot, width=1200, height=1600) == []
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1600, 1200, 3)
    assert (pixels.std(axis=(0, 1)) > 10).all()  # drawn, not a blank page
