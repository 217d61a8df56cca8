"""Quickstart plumbing that needs no training: settings, loud failures, the report."""

import argparse

import pytest

from handx_jax.commands import quickstart
from handx_jax.eval import report


def test_missing_stage_fails_loudly():
    with pytest.raises(RuntimeError, match="step 'GIF' needs handx_jax.diffusion.render.no_such_function"):
        quickstart._require("handx_jax.diffusion.render", "no_such_function", "GIF")
    with pytest.raises(RuntimeError, match="no_such_module"):
        quickstart._require("handx_jax.no_such_module", "x", "samples")


def test_settings_budget_and_train_config(tmp_path):
    default, tiny = quickstart.Settings(), quickstart.TINY
    assert default.diffusion_config.endswith("size=XS") and default.replications >= 2
    assert tiny.diffusion_steps < default.diffusion_steps and tiny.num_train < default.num_train
    config = quickstart._train_config(default.evaluator_config, str(tmp_path), 40, 16, 3, lr=1e-3)
    assert (config.train.steps, config.train.batch_size, config.train.seed) == (40, 16, 3)
    assert config.train.lr == 1e-3 and config.data.dir == str(tmp_path)
    assert 1 <= config.train.warmup_steps <= 4 and config.train.ckpt_every == 40


def test_autoregressive_model_gets_the_denoisers_training_flops():
    settings = quickstart.Settings()
    flops = quickstart.training_flops(settings)
    assert abs(flops["autoregressive"] / flops["diffusion"] - 1) < 0.01, flops
    # the count is the tasks' own: each family's FLOPs per example x batch x steps
    halved = quickstart.training_flops(quickstart.dataclasses.replace(settings, ar_steps=settings.ar_steps // 2))
    assert abs(halved["autoregressive"] / flops["autoregressive"] - 0.5) < 0.01


def test_report_lists_table_paths_and_times():
    summary = {"mean": 0.5, "std": 0.1, "ci95": 0.05, "values": [0.4, 0.6]}
    result = {"rows": {"ground truth": {"R@3": summary}, "diffusion XS, step 5": {"R@3": summary}},
              "meta": {"num_samples": 64}, "sanity": {"FID_noise": 1.5, "contact_positives_inter": 3}}
    text = quickstart.render_report(result, {"gif": "/x/sample_00.gif"}, {"samples": 2.0}, 10.0,
                                    quickstart.Settings(), ("l", "r", "rel"))
    assert report.markdown_table(result) in text
    assert "/x/sample_00.gif" in text and "- samples: 2.0" in text and "- FID_noise: 1.5" in text


def test_register_offers_out_and_tiny():
    parser = argparse.ArgumentParser()
    quickstart.register(parser.add_subparsers())
    args = parser.parse_args(["quickstart", "--out", "somewhere", "--tiny"])
    assert args.out == "somewhere" and args.tiny and args.func is quickstart.run and args.replications is None
    assert args.family == "diffusion"
    assert parser.parse_args(["quickstart", "--family", "both"]).family == "both"
    with pytest.raises(SystemExit):
        parser.parse_args(["quickstart", "--family", "gan"])
    args = parser.parse_args(["quickstart", "--replications", "0"])
    assert quickstart.run(args) == 2  # refused before anything runs


def test_tiny_quickstart_end_to_end(tmp_path):
    """The README's first command, at --tiny sizes and with both model families: every step
    runs and leaves its files, and the table has each family's trained and untrained rows."""
    import dataclasses
    import json
    import os

    summary = quickstart.run_quickstart(str(tmp_path / "qs"), dataclasses.replace(quickstart.TINY, family="both"))
    paths = summary["paths"]
    for name in ("report", "gif", "samples", "metrics", "table", "fsq", "autoregressive"):
        assert os.path.exists(paths[name]), name
    rows = summary["result"]["rows"]
    # gt, held-out, 2 families x (trained, untrained), each also projected onto the hand model
    assert list(rows)[0] == "ground truth" and len(rows) == 10
    for family in ("diffusion", "autoregressive"):
        assert sum(name.startswith(family) for name in rows) == 4, list(rows)
        assert all(0.0 <= rows[n]["R@3"]["mean"] <= 1.0 for n in rows if n.startswith(family))
    projected = [name for name in rows if name.endswith(", projected")]
    assert len(projected) == 4 and all(name[:-len(", projected")] in rows for name in projected)
    for name in projected:  # constant bones, no joint past its limit; the raw rows have both wrong
        assert rows[name]["BoneDev_mm"]["mean"] < 1e-3 and rows[name]["JointLimit"]["mean"] == 0.0
        assert rows[name[:-len(", projected")]]["BoneDev_mm"]["mean"] > 0.1
    assert rows["ground truth"]["C_F1_inter"]["mean"] == 1.0
    sanity = summary["result"]["sanity"]
    assert sanity["contact_clips"] == quickstart.TINY.num_test and sanity["C_F1_intra_self"] == 1.0
    assert sanity["FID_noise"] > sanity["FID_heldout_gt"]
    written = json.load(open(os.path.join(tmp_path, "qs", "quickstart.json")))
    assert set(written["seconds"]) >= {"evaluation", "GIF"} and written["total_seconds"] > 0
    with open(paths["report"]) as f:
        text = f.read()
    assert "| ground truth |" in text and paths["gif"] in text and ", projected |" in text

    # `handx evaluate` on the run the quickstart trained, at a named checkpoint.
    from handx_jax import cli
    from handx_jax.train import metrics_log

    run_dir, ev_dir = paths["diffusion"], paths["evaluator"]
    step = max(json.loads(line)["step"] for line in open(os.path.join(run_dir, "metrics.jsonl")))
    common = ["evaluate", "--workdir", run_dir, "--evaluator", ev_dir, "--replications", "2", "--steps", "2", "--batch-size", "16",
              "--num-samples", "32", "--mm-generations", "0"]
    assert cli.main(common + ["--step", str(step)]) == 0
    evals = [r for r in metrics_log.read_metrics(run_dir) if "eval/R@3" in r]
    assert evals[-1]["step"] == step and 0.0 <= evals[-1]["eval/R@3"] <= 1.0
    assert cli.main(common + ["--step", str(step + 1)]) == 1  # no such checkpoint: named, nothing written
    assert len([r for r in metrics_log.read_metrics(run_dir) if "eval/R@3" in r]) == len(evals)
