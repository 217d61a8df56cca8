"""The size-ladder rule and the IsoFLOP sweep built from it."""

import pytest

from handx_jax import configlib
from handx_jax.scaling import ladder, sweeps


def test_rule_gives_depth_heads_and_mlp_from_width():
    rule = ladder.ShapeRule(aspect=16, head_dim=32, mlp_ratio=4)
    assert rule.shape(16) == {"num_layers": 1, "d_model": 16, "mlp_dim": 64, "num_heads": 1}
    assert rule.shape(64) == {"num_layers": 4, "d_model": 64, "mlp_dim": 256, "num_heads": 2}
    assert rule.shape(128)["num_layers"] == 8 and rule.shape(128)["num_heads"] == 4
    shapes = [rule.shape(w) for w in (16, 32, 64, 128, 256)]
    assert all(a["num_layers"] <= b["num_layers"] for a, b in zip(shapes, shapes[1:]))
    with pytest.raises(ValueError, match="divisible"):
        rule.shape(100)  # 3 heads do not divide 100


def test_ladder_labels_and_overrides_sorted():
    rungs = ladder.ladder([64, 16, 32])
    assert list(rungs) == ["d16", "d32", "d64"]
    assert "model.d_model=64" in rungs["d64"] and "model.num_heads=2" in rungs["d64"]


def test_isoflop_sweep_windows_move_to_larger_models_with_budget():
    sweep = sweeps.load_sweep("cpu_isoflop")
    budgets = sorted({p.compute_budget for p in sweep.points})
    assert len(budgets) >= 4  # three fitting budgets and one held out
    mean_width = {}
    for budget in budgets:
        widths = [int(p.label[1:]) for p in sweep.points if p.compute_budget == budget]
        assert len(widths) >= (2 if budget == budgets[-1] else 5)
        mean_width[budget] = sum(widths) / len(widths)
    fitting = budgets[:-1]  # the held-out budget trains chosen widths around its predicted optimum
    assert [mean_width[b] for b in fitting] == sorted(mean_width[b] for b in fitting)
    assert min(int(p.label[1:]) for p in sweep.points if p.compute_budget == budgets[-1]) > 8
    config = configlib.load_config("configs/sweeps/cpu_isoflop.py")
    assert config.holdout_budgets == [budgets[-1]]
    for point in sweep.points:  # every rung is a valid diffusion config with a budget-tied schedule
        cfg = sweeps.point_config(sweep, point)
        assert cfg.train.warmup_fraction > 0 and cfg.model.d_model == int(point.label[1:])


def test_gated_rule_gives_swiglu_widths_with_the_same_mlp_weights():
    # Oracle: LLaMA's 8d/3 rounded up to a multiple of 8, in integers.
    for width in (8, 16, 24, 32, 48, 64, 96, 128):
        shape = ladder.GATED_RULE.shape(width)
        assert shape["mlp_dim"] == -(-8 * width // 24) * 8, width
        assert shape["mlp_dim"] % 8 == 0
        # three gated matrices hold about as many weights as the two-matrix 4x MLP
        assert abs(3 * shape["mlp_dim"] / (2 * 4 * width) - 1) < 0.35
    assert ladder.ShapeRule().shape(48)["mlp_dim"] == 192  # the default rule is unchanged


def test_isoflop_sweep_adds_prefix_lm_points_over_one_shared_tokenizer(tmp_path):
    from handx_jax.scaling import launch

    default = sweeps.load_sweep("cpu_isoflop")
    both = sweeps.load_sweep("cpu_isoflop:families=both,codebook=1024")
    ar = [p for p in both.points if p.family == "autoregressive"]
    diffusion = [p for p in both.points if p.family == "diffusion"]
    assert [p.point_id for p in diffusion] == [p.point_id for p in default.points]
    assert len(ar) >= 3 * 5 + 2 and {p.codebook for p in ar} == {1024}
    assert sorted({p.compute_budget for p in ar}) == sorted({p.compute_budget for p in default.points})
    manifest = launch.plan_sweep(both, str(tmp_path / "out"))
    assert list(manifest["fsq"]) == ["1024"]
    for point in manifest["points"]:
        if point["family"] == "autoregressive":
            assert "--steps" not in point["evaluate"] and "top_k=20" in point["evaluate"]
            assert any(a.startswith("--config.model.fsq_workdir=") and a.endswith("cb1024") for a in point["train"])
        else:
            assert point["evaluate"][point["evaluate"].index("--steps") + 1] == "10"
        assert point["steps"] > 0
    for point in ar:  # gated-MLP rungs on the prefix-LM config
        cfg = sweeps.point_config(both, point)
        width = int(point.label[1:])
        assert cfg.family == "autoregressive" and cfg.model.d_model == width
        assert cfg.model.mlp_dim == ladder.GATED_RULE.shape(width)["mlp_dim"]
    only_ar = sweeps.load_sweep("cpu_isoflop:families=autoregressive")
    assert {p.family for p in only_ar.points} == {"autoregressive"}
    with pytest.raises(ValueError, match="families"):
        sweeps.load_sweep("cpu_isoflop:families=gan")


def test_isoflop_sweep_trains_the_quickstart_stages_unless_asked_for_t():
    default = configlib.load_config("configs/sweeps/cpu_isoflop.py")
    assert default.evaluator.config.endswith("size=XS") and default.text_tower.config.endswith("size=XS")
    assert "train.steps=400" in default.text_tower.overrides
    small = configlib.load_config("configs/sweeps/cpu_isoflop.py:stages=T")
    assert small.evaluator.config.endswith("size=T,runlocal") and "train.steps=600" in small.text_tower.overrides
    quality = configlib.load_config("configs/sweeps/cpu_quality.py")  # its measured table used the T stages
    assert quality.text_tower.config.endswith("size=T,runlocal")
    with pytest.raises(ValueError, match="stage size"):
        configlib.load_config("configs/sweeps/cpu_isoflop.py:stages=XL")
