"""Embedded IsoFLOP sweep on synthetic data: compute budgets x a width ladder (CPU, 2 cores).

Every point is a diffusion model whose shape comes from the ladder rule
(`handx_jax/scaling/ladder.py`: depth from width, heads from width, MLP 4x width), trained
for a compute budget (FLOPs) rather than for steps: its steps are the budget divided by the
task's analytic FLOPs per batch, and its learning-rate schedule (5 % warmup, cosine to the
last step) ends with the run. Every point logs the held-out diffusion loss (`eval/loss`, a
fixed grid of timesteps and noise draws on the test split) at its last step and is
evaluated with the sweep's evaluator (R@3, FID), conditioned on one shared frozen text tower.

Each fitting budget trains `sizes_per_budget` consecutive widths of the ladder, the window
sliding to larger widths as the budget grows, so each budget's sizes straddle its optimum.
The held-out budget (larger than every fitting budget) trains `holdout_widths` and is left
out of the fits, to check the extrapolation: `handx scaling study OUT/runs --out OUT/study`.

Options: budgets (fitting budgets in FLOPs, '+'-separated, default 1e11+3e11+6e11),
holdout (the held-out budget, default 1.2e12), widths (the ladder, default 8+12+16+24+32+48+64),
holdout_widths (default 16+24+32), sizes_per_budget (default 6), clips (synthetic train
clips, default 4096), batch (default 64), replications (evaluation replications, default 3).
"""

import math

import ml_collections

from handx_jax import configlib
from handx_jax.scaling import ladder

OPTIONS = ("budgets", "holdout", "widths", "holdout_widths", "sizes_per_budget", "clips", "batch", "replications")
DEFAULT_BUDGETS = (1e11, 3e11, 6e11)
DEFAULT_HOLDOUT = 1.2e12
DEFAULT_WIDTHS = (8, 12, 16, 24, 32, 48, 64)
DEFAULT_HOLDOUT_WIDTHS = (16, 24, 32)


def _numbers(value, default):
    if value is None:
        return tuple(default)
    return tuple(float(v) for v in str(value).split("+") if v)


def window(widths, budget, budgets, count):
    """`count` consecutive widths; the window slides (in log budget) from the smallest
    widths at the smallest budget to the largest at the largest budget."""
    widths = sorted(widths)
    count = min(count, len(widths))
    span = len(widths) - count
    lo, hi = math.log(min(budgets)), math.log(max(budgets))
    frac = 0.0 if hi == lo else (math.log(budget) - lo) / (hi - lo)
    start = min(span, max(0, round(frac * span)))
    return widths[start:start + count]


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/cpu_isoflop.py")
    budgets = sorted(_numbers(opts.get("budgets"), DEFAULT_BUDGETS))
    holdout = float(opts.get("holdout", DEFAULT_HOLDOUT))
    widths = [int(w) for w in _numbers(opts.get("widths"), DEFAULT_WIDTHS)]
    holdout_widths = [int(w) for w in _numbers(opts.get("holdout_widths"), DEFAULT_HOLDOUT_WIDTHS)]
    per_budget = int(opts.get("sizes_per_budget", 6))
    if not budgets or min(budgets) <= 0 or holdout <= max(budgets):
        raise ValueError(f"configs/sweeps/cpu_isoflop.py: budgets {budgets} must be positive and the "
                         f"holdout budget {holdout:g} larger than all of them")
    if per_budget < 3:
        raise ValueError("configs/sweeps/cpu_isoflop.py: sizes_per_budget must be at least 3 (a parabola)")
    batch = int(opts.get("batch", 64))
    clips = int(opts.get("clips", 4096))
    rungs = ladder.ladder(widths + holdout_widths)

    def point(width, budget):
        name = ladder.label(width)
        return dict(family="diffusion", size="T", label=name, data=1.0, compute_budget=budget, seed=0,
                    overrides=list(rungs[name]))

    c = ml_collections.ConfigDict()
    c.name = "cpu_isoflop"
    c.runlocal = True
    c.points = [point(w, b) for b in budgets for w in window(widths, b, budgets, per_budget)]
    c.points += [point(w, holdout) for w in sorted(holdout_widths)]
    c.holdout_budgets = [holdout]
    return cpu_budget_stages(c, batch=batch, clips=clips, replications=int(opts.get("replications", 3)))


def cpu_budget_stages(c, *, batch: int, clips: int, replications: int):
    """What every CPU compute-budget sweep shares: the budget-tied recipe of its points, one
    synthetic dataset, a T evaluator and a T text tower, and a short evaluation."""
    c.common_overrides = [f"train.batch_size={batch}", "train.warmup_fraction=0.05", "train.log_every=100",
                          "train.ckpt_every=1000000", "train.lr=2e-3", "train.ema_decay=0.99"]
    c.data = dict(dir=None, num_synthetic_clips=clips, num_test_clips=256)
    c.evaluator = dict(config="configs/evaluator.py:size=T,runlocal", overrides=["train.steps=600"])
    c.text_tower = dict(config="configs/text_tower.py:size=T,runlocal",
                        overrides=["train.steps=600", "train.ckpt_every=600"])
    c.evaluate = dict(args=["--replications", str(replications), "--steps", "10",
                            "--mm-texts", "8", "--mm-generations", "4", "--no-text-check"])
    return c
