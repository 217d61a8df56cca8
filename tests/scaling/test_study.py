"""The IsoFLOP study on synthetic run directories whose held-out loss follows a known law.

Runs follow L = E + A N^-a + B D^-b with D = C / (6 N) (samples seen) plus 0.3 % noise, at
four budgets with five sizes centred on each budget's optimum; the largest budget is held
out. The study must recover the optimum's growth, predict the held-out budget inside its
interval, and fit R@3 (a decreasing function of the loss here) with a positive slope.
"""

import json
import os

import numpy as np
import pytest

from handx_jax.scaling import runs as runs_lib, study

A_EXP, B_EXP, BIG_A, BIG_B, E = 0.34, 0.28, 400.0, 410.0, 0.2


def _optimum(c):
    return (A_EXP * BIG_A / (B_EXP * BIG_B)) ** (1 / (A_EXP + B_EXP)) * (c / 6) ** (B_EXP / (A_EXP + B_EXP))


def _write_sweep(root, budgets, seed=0, noise=0.003):
    rng = np.random.default_rng(seed)
    for c in budgets:
        for j, n in enumerate(_optimum(c) * np.logspace(-0.6, 0.6, 5)):
            samples = c / (6 * n)
            loss = (E + BIG_A * n ** -A_EXP + BIG_B * samples ** -B_EXP) * np.exp(rng.normal(0, noise))
            r3 = 1.0 - 0.5 * loss  # better loss, better retrieval
            runs_lib.write_synthetic_run(os.path.join(root, f"c{c:.0e}-{j}"), size=f"N{n:.2g}", params=float(n),
                                         flops=float(c * (1 + 0.01 * rng.uniform(-1, 1))), samples=float(samples),
                                         metrics={"loss": float(loss), "R@3": float(r3)})


def test_study_recovers_optimum_growth_and_predicts_the_held_out_budget(tmp_path):
    budgets = np.logspace(15, 18, 4)
    _write_sweep(str(tmp_path / "runs"), budgets)
    result = study.analyse([str(tmp_path / "runs")], holdout="largest", metrics=("R@3",), n_boot=200, size="params")
    iso = result["isoflop"]
    truth_a = B_EXP / (A_EXP + B_EXP)
    assert iso["ci95"]["a"][0] > 0  # the optimum moves to larger models
    assert abs(iso["params"]["a"] / truth_a - 1) < 0.1, iso["params"]
    assert iso["extra"]["data_law"]["b"] > 0
    assert len(result["holdout_runs"]) == 5
    assert result["frontier"]["r2"] >= 0.95
    (check,) = result["extrapolation"]
    assert check["inside"], check
    assert abs(check["relative_error"]) < 0.05
    r3 = result["frontier_metrics"]["R@3"]["fit"]
    assert r3["params"]["a"] > 0 and r3["r"] > 0.9
    paths = study.write_study(result, str(tmp_path / "out"))
    for key in ("json", "md", "isoflop", "frontier", "frontier_R@3"):
        assert os.path.getsize(paths[key]) > 0, key
    saved = json.load(open(paths["json"]))
    assert saved["extrapolation"][0]["inside"] is True
    assert "_private" not in saved


def test_study_names_runs_without_a_held_out_loss(tmp_path):
    budgets = np.logspace(15, 17, 3)
    _write_sweep(str(tmp_path / "runs"), budgets)
    runs_lib.write_synthetic_run(str(tmp_path / "runs" / "no-eval"), size="N1", params=1e6, flops=1e15,
                                 samples=1e8, metrics={"R@3": 0.5})
    result = study.analyse([str(tmp_path / "runs")], holdout=None, metrics=("R@3",), n_boot=50, size="params")
    assert any("no-eval" in line for line in result["skipped"])
    assert result["extrapolation"] == []


def test_study_refuses_a_holdout_budget_that_matches_no_run(tmp_path):
    _write_sweep(str(tmp_path / "runs"), np.logspace(15, 17, 3))
    with pytest.raises(ValueError, match="matches no run"):
        study.analyse([str(tmp_path / "runs")], holdout=3e20, n_boot=20, size="params")


def test_block_params_counts_the_transformer_blocks_only(tmp_path):
    """N = layers x (4 d^2 + 2 d mlp) for the diffusion transformer, 3 d mlp for SwiGLU; a run
    without a block shape is skipped by name, not counted with its total."""
    cases = (("diffusion", 2, 32, 128, 2 * (4 * 32 * 32 + 2 * 32 * 128)),
             ("autoregressive", 3, 64, 192, 3 * (4 * 64 * 64 + 3 * 64 * 192)))
    for family, layers, d, mlp, expected in cases:
        path = runs_lib.write_synthetic_run(str(tmp_path / family), size="x", params=1e6, flops=1e12, samples=1e5,
                                            metrics={"loss": 1.0}, family=family,
                                            config_extra={"model": {"num_layers": layers, "d_model": d, "mlp_dim": mlp}})
        assert study.block_params(runs_lib.load_run(path)) == expected
    _write_sweep(str(tmp_path / "sweep"), np.logspace(15, 17, 3))
    with pytest.raises(ValueError, match="at least 6 runs"):
        study.analyse([str(tmp_path / "sweep")], holdout=None, n_boot=20)  # no block shapes: all skipped


def test_study_refuses_runs_of_two_model_families(tmp_path):
    _write_sweep(str(tmp_path / "runs"), np.logspace(15, 17, 3))
    run = tmp_path / "runs" / "c1e+15-0"
    config = json.loads((run / "config.json").read_text())
    config["family"] = "autoregressive"
    (run / "config.json").write_text(json.dumps(config))
    assert {r.family for r in runs_lib.load_runs([str(tmp_path / "runs")])} == {"autoregressive", "diffusion"}
    with pytest.raises(ValueError, match="mix model families"):
        study.analyse([str(tmp_path / "runs")], holdout=None, n_boot=20, size="params")


def test_log_axes_label_only_the_2x_and_5x_minor_ticks(tmp_path):
    import matplotlib.pyplot as plt

    from handx_jax.scaling import plots

    fig, ax = plt.subplots()
    ax.plot([3e11, 2.4e12], [1, 2])
    ax.set_xscale("log")
    formatter_before = ax.xaxis.get_minor_formatter()
    plots.save_figure(fig, str(tmp_path / "ticks"))
    assert ax.xaxis.get_minor_formatter() is not formatter_before
    labels = {round(v / 1e11, 3): plots.sparse_minor_labels(v) for v in (2e11, 3e11, 4e11, 5e11, 6e11, 2e12)}
    assert [k for k, text in labels.items() if text] == [2.0, 5.0, 20.0]
    assert labels[2.0] == r"$2\times10^{11}$"
    assert ax.xaxis.get_minor_formatter()(4e11) == "" and ax.xaxis.get_minor_formatter()(5e11) != ""
