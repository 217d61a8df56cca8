"""Embedded IsoFLOP sweep on synthetic data: compute budgets x a width ladder (CPU, 2 cores).

Every point is a diffusion model whose shape comes from the ladder rule
(`handx_jax/scaling/ladder.py`: depth from width, heads from width, MLP 4x width), trained
for a compute budget (FLOPs) rather than for steps: its steps are the budget divided by the
task's analytic FLOPs per batch, and its learning-rate schedule (5 % warmup, cosine to the
last step) ends with the run. Every point logs the held-out diffusion loss (`eval/loss`, a
fixed grid of timesteps and noise draws on the test split) at its last step and is
evaluated with the sweep's evaluator (R@3, FID), conditioned on one shared frozen text
tower.

Fitting budgets each get `sizes_per_budget` widths centred on the budget's expected optimum;
the held-out budget (largest) gets `holdout_sizes` widths around its predicted optimum and is
left out of the fits, to check the extrapolation. `handx scaling study OUT/runs --holdout-largest`
fits and plots everything.

Options: budgets (fitting budgets in FLOPs, '+'-separated, default 1e11+3e11+1e12),
holdout (the held-out budget, default 3e12), widths ('+'-separated ladder, default
16+24+32+48+64+96+128), clips (synthetic train clips, default 4096), batch (default 32),
replications (evaluation replications, default 3), quality (synthetic data quality,
default high).
"""

import math

import ml_collections

from handx_jax import configlib
from handx_jax.scaling import ladder

OPTIONS = ("budgets", "holdout", "widths", "clips", "batch", "replications", "quality", "sizes_per_budget",
           "holdout_sizes")
DEFAULT_BUDGETS = (1e11, 3e11, 1e12)
DEFAULT_HOLDOUT = 3e12
DEFAULT_WIDTHS = (16, 24, 32, 48, 64, 96, 128)


def _floats(value, default):
    if value is None:
        return tuple(default)
    return tuple(float(v) for v in str(value).split("+") if v)


def centred(widths, budget, budgets, count):
    """`count` consecutive widths whose window slides from the smallest (at the smallest
    budget) to the largest (at the largest budget), so each budget's sizes straddle an
    optimum that grows with compute."""
    widths = sorted(widths)
    count = min(count, len(widths))
    span = len(widths) - count
    lo, hi = math.log(min(budgets)), math.log(max(budgets))
    frac = 0.0 if hi == lo else (math.log(budget) - lo) / (hi - lo)
    start = min(span, max(0, round(frac * span)))
    return widths[start:start + count]


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/cpu_isoflop.py")
    budgets = sorted(_floats(opts.get("budgets"), DEFAULT_BUDGETS))
    holdout = float(opts.get("holdout", DEFAULT_HOLDOUT))
    widths = [int(w) for w in _floats(opts.get("widths"), DEFAULT_WIDTHS)]
    per_budget = int(opts.get("sizes_per_budget", 5))
    holdout_sizes = int(opts.get("holdout_sizes", 3))
    if len(budgets) < 1 or any(b <= 0 for b in budgets) or holdout <= max(budgets):
        raise ValueError(f"configs/sweeps/cpu_isoflop.py: budgets {budgets} must be positive and the "
                         f"holdout budget {holdout:g} larger than all of them")
    batch = int(opts.get("batch", 32))
    rungs = ladder.ladder(widths)
    all_budgets = budgets + [holdout]

    c = ml_collections.ConfigDict()
    c.name = "cpu_isoflop"
    c.runlocal = True
    points = []
    for budget in all_budgets:
        count = holdout_sizes if budget == holdout else per_budget
        for width in centred(widths, budget, all_budgets, count):
            name = ladder.label(width)
            points.append(dict(family="diffusion", size="T", label=name, data=1.0, compute_budget=budget,
                               seed=0, overrides=list(rungs[name])))
    c.points = points
    c.holdout_budgets = [holdout]
    c.common_overrides = [f"train.batch_size={batch}", "train.warmup_fraction=0.05", "train.log_every=100",
                          "train.ckpt_every=1000000",
                          "train.lr=2e-3", "train.ema_decay=0.99",
                          f"data.num_synthetic_clips={int(opts.get('clips', 4096))}"]
    c.data = dict(dir=None, num_synthetic_clips=int(opts.get("clips", 4096)), num_test_clips=256,
                  quality=str(opts.get("quality", "high")))
    c.evaluator = dict(config="configs/evaluator.py:size=T,runlocal", overrides=["train.steps=600"])
    c.text_tower = dict(config="configs/text_tower.py:size=T,runlocal",
                        overrides=["train.steps=600", "train.ckpt_every=600"])
    c.evaluate = dict(args=["--replications", str(int(opts.get("replications", 3))), "--steps", "10",
                            "--mm-texts", "8", "--mm-generations", "4", "--no-text-check"])
    return c
