"""Fitters recover known scaling laws from synthetic run directories, with calibrated intervals.

Each repetition writes run directories (config.json + metrics.jsonl) whose metric follows a
known law plus Gaussian noise, reads them back with `runs.py`, and fits. Checks:
- every repetition's exponent estimate is within 5 % of the truth;
- the 95 % bootstrap interval covers the truth in 88-99 % of the repetitions. With R
  repetitions the observed coverage is Binomial(R, 0.95) / R when the intervals are
  calibrated: for R = 200 its standard deviation is 1.5 points, so 0.88-0.99 is about
  -4.5 to +2.6 standard deviations: it fails for intervals that are clearly too narrow
  (without the t correction and the (B + 1) quantile positions in fit.py, coverage at
  24 runs measured 0.84-0.93) or far too wide (coverage ~1.0), not for sampling luck.
  Seeds are fixed, so the test is deterministic.
200 bootstrap draws per fit (vectorised over draws) keep the file well under a minute.
"""

import os

import numpy as np
import pytest

from handx_jax.scaling import fit, runs as runs_lib

SIZES = np.logspace(6, 9, 8)  # 1M .. 1B parameters
SEEDS_PER_SIZE = 3


def _write_runs(root, xs, metric_values, *, key, flops=None, ratios=None, clips=4096):
    for i, (x, y) in enumerate(zip(xs, metric_values)):
        runs_lib.write_synthetic_run(
            os.path.join(root, f"run{i:03d}"), size=f"N{x:.2g}", params=float(x),
            flops=float(flops[i] if flops is not None else 6 * x * 1e5), samples=1e5,
            metrics={key: float(y)}, data_ratio=float(ratios[i]) if ratios is not None else 1.0,
            num_clips=clips)


def _read(root, key, x_kind, also=()):
    table = runs_lib.collect(runs_lib.load_runs([root]), key, x_kind, also=also)
    assert not table.skipped
    return table


def _coverage_band(hits, reps):
    coverage = hits / reps
    print(f"coverage {coverage:.3f} over {reps} repetitions")
    assert 0.88 <= coverage <= 0.99, f"95 % intervals covered the truth in {coverage:.3f} of {reps}"
    return coverage


def test_power_law_recovery_and_coverage(tmp_path):
    e_true, a_true, alpha_true, noise = 0.5, 40.0, 0.3, 0.003
    rng = np.random.default_rng(0)
    n = np.repeat(SIZES, SEEDS_PER_SIZE)
    reps, hits = 200, 0
    for rep in range(reps):
        y = e_true + a_true * n**-alpha_true + rng.normal(0, noise, n.size)
        root = str(tmp_path / f"rep{rep}")
        _write_runs(root, n, y, key="FID")
        table = _read(root, "FID", "params")
        np.testing.assert_allclose(np.sort(table.x), np.sort(n))
        result = fit.fit_power(table.x, table.y, n_boot=200, seed=rep)
        assert abs(result.params["alpha"] / alpha_true - 1) < 0.05, result.params
        low, high = result.ci95["alpha"]
        assert low < result.params["alpha"] < high
        hits += low <= alpha_true <= high
    _coverage_band(hits, reps)


def test_loglinear_recovery_and_coverage(tmp_path):
    # The paper's Fig. 4 law: R@3 = 0.4391 log10(FLOPs) - 3.8707.
    slope, intercept, noise = 0.4391, -3.8707, 0.02
    rng = np.random.default_rng(1)
    flops = np.repeat(np.logspace(15, 18, 8), SEEDS_PER_SIZE)
    reps, hits = 200, 0
    for rep in range(reps):
        y = slope * np.log10(flops) + intercept + rng.normal(0, noise, flops.size)
        root = str(tmp_path / f"rep{rep}")
        _write_runs(root, flops / 1e5, y, key="R@3", flops=flops)
        table = _read(root, "R@3", "flops")
        result = fit.fit_loglinear(table.x, table.y, n_boot=200, seed=rep)
        assert abs(result.params["a"] / slope - 1) < 0.05, result.params
        assert result.r > 0.95
        low, high = result.ci95["a"]
        hits += low <= slope <= high
    _coverage_band(hits, reps)


def test_power2d_recovery_and_coverage(tmp_path):
    truth = {"E": 1.0, "A": 30.0, "alpha": 0.3, "B": 20.0, "beta": 0.4}
    noise = 0.002
    rng = np.random.default_rng(2)
    ratios = np.array([0.05, 0.2, 1.0])
    sizes = np.logspace(6, 9, 5)
    n, r = [g.ravel() for g in np.meshgrid(sizes, ratios)]
    n, r = np.repeat(n, 2), np.repeat(r, 2)
    clips = 84729
    reps, hits_alpha, hits_beta = 200, 0, 0
    for rep in range(reps):
        d = r * clips
        y = (truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]
             + rng.normal(0, noise, n.size))
        root = str(tmp_path / f"rep{rep}")
        _write_runs(root, n, y, key="loss", ratios=r, clips=clips)
        table = _read(root, "loss", "params", also=("data",))
        np.testing.assert_allclose(np.sort(table.extra["data"]), np.sort(d))
        result = fit.fit_power2d(table.x, table.extra["data"], table.y, n_boot=200, seed=rep)
        for name in ("alpha", "beta"):
            assert abs(result.params[name] / truth[name] - 1) < 0.05, result.params
        hits_alpha += result.ci95["alpha"][0] <= truth["alpha"] <= result.ci95["alpha"][1]
        hits_beta += result.ci95["beta"][0] <= truth["beta"] <= result.ci95["beta"][1]
    _coverage_band(hits_alpha, reps)
    _coverage_band(hits_beta, reps)


def test_power2d_log_recovery_and_coverage(tmp_path):
    """The log-space (LSE, Huber) fit of L(N, D) with multiplicative noise: exponents within
    5 % and calibrated intervals; E, A, B non-negative in every bootstrap draw."""
    truth = {"E": 1.0, "A": 30.0, "alpha": 0.3, "B": 20.0, "beta": 0.4}
    noise = 0.002  # relative
    rng = np.random.default_rng(3)
    ratios = np.array([0.05, 0.2, 1.0])
    n, r = [g.ravel() for g in np.meshgrid(np.logspace(6, 9, 5), ratios)]
    n, r = np.repeat(n, 2), np.repeat(r, 2)
    clips = 84729
    reps, hits = 200, {"alpha": 0, "beta": 0}
    for rep in range(reps):
        d = r * clips
        y = (truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]) \
            * np.exp(rng.normal(0, noise, n.size))
        root = str(tmp_path / f"rep{rep}")
        _write_runs(root, n, y, key="loss", ratios=r, clips=clips)
        table = _read(root, "loss", "params", also=("data",))
        result = fit.fit_power2d_log(table.x, table.extra["data"], table.y, n_boot=200, seed=rep)
        assert np.all(result.boot[:, [0, 1, 3]] >= 0)
        for name in hits:
            assert abs(result.params[name] / truth[name] - 1) < 0.05, result.params
            hits[name] += result.ci95[name][0] <= truth[name] <= result.ci95[name][1]
    for name in hits:
        _coverage_band(hits[name], reps)


def test_power2d_log_keeps_coefficients_non_negative_where_linear_flips_sign():
    """Loss that falls with N but is flat in D plus noise: the linear fit may give B < 0 (more
    data looks worse); the log-space fit cannot."""
    rng = np.random.default_rng(0)
    n, d = [g.ravel() for g in np.meshgrid(np.logspace(5, 7, 5), np.array([500.0, 1000.0, 2000.0]))]
    y = (0.5 + 40.0 * n ** -0.35) * (1 + 0.01 * np.log(d / 1000.0)) * np.exp(rng.normal(0, 0.003, n.size))
    log_fit = fit.fit_power2d_log(n, d, y, n_boot=50)
    assert log_fit.params["B"] >= 0 and log_fit.params["E"] >= 0 and log_fit.params["A"] > 0
    lin_fit = fit.fit_power2d(n, d, y, n_boot=50)
    assert lin_fit.params["B"] < 0  # the failure the log-space form rules out


def test_power2d_log_refuses_non_positive_loss():
    n = np.logspace(5, 7, 6)
    with pytest.raises(ValueError, match="positive"):
        fit.fit_power2d_log(n, np.repeat([1e3, 2e3], 3), np.array([1.0, 0.5, 0.0, 0.2, 0.1, 0.3]))


def _isoflop_design(budgets, a, b, big_a, big_b, span=0.8, per_budget=7):
    """Sizes centred (in log space) on the true optimum of L = E + A N^-a + B (C/6N)^-b."""
    n_rows, c_rows = [], []
    for c in budgets:
        # dL/dN = 0  =>  N* = (a A / (b B))^(1/(a+b)) (C/6)^(b/(a+b)).
        n_opt = (a * big_a / (b * big_b)) ** (1 / (a + b)) * (c / 6) ** (b / (a + b))
        n_rows += list(n_opt * np.logspace(-span, span, per_budget))
        c_rows += [c] * per_budget
    return np.array(n_rows), np.array(c_rows)


def test_isoflop_recovery_and_coverage(tmp_path):
    a, b, big_a, big_b, e, noise = 0.34, 0.28, 400.0, 410.0, 1.7, 0.01
    exponent = b / (a + b)  # optimal size grows as C^(b / (a + b))
    data_exponent = a / (a + b)
    budgets = np.logspace(15, 19, 5)
    n, c = _isoflop_design(budgets, a, b, big_a, big_b)
    rng = np.random.default_rng(3)
    reps, hits, hits_d = 200, 0, 0
    for rep in range(reps):
        loss = e + big_a * n**-a + big_b * (c / (6 * n)) ** -b + rng.normal(0, noise, n.size)
        # Runs of one budget end a few steps apart: jitter FLOPs by up to 2 %.
        flops = c * (1 + 0.02 * rng.uniform(-1, 1, n.size))
        root = str(tmp_path / f"rep{rep}")
        _write_runs(root, n, loss, key="loss", flops=flops)
        table = _read(root, "loss", "params", also=("flops",))
        result = fit.fit_isoflop(table.x, table.extra["flops"], table.y, goal="min", n_boot=200, seed=rep,
                                 samples=flops / (6 * table.x))
        assert len([x for x in result.extra["budgets"] if x["used"]]) == len(budgets)
        assert abs(result.params["a"] / exponent - 1) < 0.05, result.params
        hits += result.ci95["a"][0] <= exponent <= result.ci95["a"][1]
        # Optimal data grows as C^(a / (a + b)); its interval is calibrated too.
        law = result.extra["data_law"]
        assert abs(law["b"] / data_exponent - 1) < 0.05, law
        hits_d += law["ci95"]["b"][0] <= data_exponent <= law["ci95"]["b"][1]
        for entry in result.extra["budgets"]:  # D* / N* at each budget brackets the true ratio
            n_opt = 10 ** entry["log10_n_opt"]
            assert entry["samples_per_param"] == pytest.approx(entry["budget"] / (6 * n_opt**2), rel=0.05)
    _coverage_band(hits, reps)
    _coverage_band(hits_d, reps)


def test_group_budgets_splits_on_ratio_jumps():
    flops = np.array([1.0e15, 1.01e15, 0.99e15, 1e16, 1.02e16, 1e17])
    group = fit.group_budgets(flops)
    assert group.tolist() == [0, 0, 0, 1, 1, 2]


def test_outlier_is_flagged_and_does_not_move_the_fit():
    rng = np.random.default_rng(4)
    n = np.repeat(SIZES, SEEDS_PER_SIZE)
    y = 0.5 + 40.0 * n**-0.3 + rng.normal(0, 0.003, n.size)
    labels = [f"run{i}" for i in range(n.size)]
    y[5] += 0.5  # a crashed run reporting a much worse metric
    result = fit.fit_power(n, y, labels=labels, n_boot=50)
    assert result.flags["outliers"] == ["run5"]
    assert abs(result.params["alpha"] / 0.3 - 1) < 0.05
    plain = fit.fit_power(n, y, labels=labels, n_boot=0, loss="linear")
    assert abs(plain.params["alpha"] / 0.3 - 1) > abs(result.params["alpha"] / 0.3 - 1)


def test_saturation_flags():
    flops = np.logspace(15, 18, 7)
    y = 0.4391 * np.log10(flops) - 3.8707 + np.array([0.01, -0.01, 0.005, -0.005, 0.01, -0.01, 0.0])
    y[-1] -= 0.2  # the largest model falls short of the trend (the paper's saturation)
    labels = ["XS", "S", "M", "L", "XL", "XXL", "3B"]
    result = fit.fit_loglinear(flops, y, labels=labels, n_boot=50)
    assert result.flags["saturated"] == ["3B"]
    clean = fit.fit_loglinear(flops, y + np.eye(7)[-1] * 0.2, labels=labels, n_boot=50)
    assert clean.flags["saturated"] == []

    n = np.logspace(6, 9, 8)
    flat = fit.fit_power(n, 0.5 + 40 * n**-1.5 + 0.001 * np.sin(np.arange(8)), n_boot=0)
    assert flat.flags["saturated"] is True
    steep = fit.fit_power(n, 0.5 + 40 * n**-0.3 + 0.001 * np.sin(np.arange(8)), n_boot=0)
    assert steep.flags["saturated"] is False
    assert steep.flags["underdetermined"] is False
    few = np.repeat(np.logspace(6, 8, 3), 2)
    coarse = fit.fit_power(few, 0.5 + 40 * few**-0.3 + 0.001 * np.cos(np.arange(6)), n_boot=50)
    assert coarse.flags["underdetermined"] is True
    assert coarse.ci95["alpha"][0] >= 1e-4  # intervals stay inside alpha's domain


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="x must be positive"):
        fit.fit_power([0, 1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 3 runs"):
        fit.fit_loglinear([1, 2], [1, 2])
    with pytest.raises(ValueError, match="goal"):
        fit.fit_isoflop(np.ones(6), np.ones(6), np.ones(6), goal="up")


def test_batched_bootstrap_refit_matches_scipy():
    """The vectorised refit used by the bootstrap reaches scipy's least_squares minimum."""
    from scipy import optimize

    rng = np.random.default_rng(5)
    n = np.repeat(SIZES, SEEDS_PER_SIZE)
    u = n / np.exp(np.mean(np.log(n)))
    theta0 = np.array([0.5, 0.6, 0.3])
    model = fit._Model(
        names=("E", "A", "alpha"), predict=lambda t, u: t[0] + t[1] * u ** -t[2],
        jac=lambda t, u: fit._columns(1.0, u ** -t[2], -t[1] * u ** -t[2] * np.log(u)),
        starts=[theta0], lower=np.array([-np.inf, -np.inf, 1e-4]), upper=np.array([np.inf, np.inf, 10.0]))
    y_bn = model.predict(np.array([0.52, 0.55, 0.33]), u)[None, :] + rng.normal(0, 0.01, (6, n.size))
    y_bn[0, 3] += 0.2  # an outlier: the Huber weights matter
    for loss in ("linear", "huber", "soft_l1"):
        batched = fit._batched_refit(model, y_bn, (u,), theta0, loss, 0.01)
        for row, theta in zip(y_bn, batched):
            ref = optimize.least_squares(lambda t: model.predict(t, u) - row, theta0, loss=loss,
                                         f_scale=0.01, bounds=(model.lower, model.upper),
                                         xtol=1e-14, ftol=1e-14, gtol=1e-14)
            np.testing.assert_allclose(theta, ref.x, rtol=1e-4, atol=1e-6, err_msg=loss)
