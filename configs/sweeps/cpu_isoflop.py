"""Embedded IsoFLOP sweep on synthetic data: compute budgets x a width ladder (CPU, 2 cores).

Every point is a diffusion model whose shape comes from the ladder rule
(`handx_jax/scaling/ladder.py`: depth from width, heads from width, MLP 4x width), trained
for a compute budget (FLOPs) rather than for steps: its steps are the budget divided by the
task's analytic FLOPs per batch, and its learning-rate schedule (5 % warmup, cosine to the
last step) ends with the run. Every point logs the held-out diffusion loss (`eval/loss`, a
fixed grid of timesteps and noise draws on the test split) at its last step and is
evaluated with the sweep's evaluator (R@3, FID), conditioned on one shared frozen text tower
(both XS, trained as the quickstart trains them).

Each fitting budget trains `sizes_per_budget` consecutive widths of the ladder, the window
sliding to larger widths as the budget grows, so each budget's sizes straddle its optimum.
The held-out budget (larger than every fitting budget) trains `holdout_widths` and is left
out of the fits, to check the extrapolation: `handx scaling study OUT/runs --out OUT/study`.

`families=autoregressive` (or `both`) adds the same budgets for the prefix-LM family: a
gated-MLP ladder (`ladder.GATED_RULE`) over FSQ motion tokens from one tokenizer trained as a
shared stage (`OUT/fsq/cb<codebook>`), its held-out token NLL as `eval/loss`. Fit each
family on its own runs: `handx scaling study OUT/runs/autoregressive-* --out OUT/study_ar`.

Options: budgets (fitting budgets in FLOPs, '+'-separated, default 3e11+6e11+1.2e12),
holdout (the held-out budget, default 2.4e12), widths (the ladder, default 8+12+16+24+32+48+64),
holdout_widths (default 16+24+32), sizes_per_budget (default 6), clips (synthetic train
clips, default 4096), batch (default 64), replications (evaluation replications, default 3),
families (diffusion, autoregressive or both; default diffusion), ar_widths (the prefix-LM
ladder, default 8+16+24+32+48+64+96), ar_holdout_widths (default 32+48+64), ar_sizes_per_budget
(default 5), codebook (the FSQ codebook, default 512), fsq_steps (tokenizer steps, default 1500),
stages (the evaluator's and text tower's recipe, XS or T, default XS: STAGE_RECIPES).
"""

import math

import ml_collections

from handx_jax import configlib
from handx_jax.scaling import ladder

OPTIONS = ("budgets", "holdout", "widths", "holdout_widths", "sizes_per_budget", "clips", "batch", "replications",
           "families", "ar_widths", "ar_holdout_widths", "ar_sizes_per_budget", "codebook", "fsq_steps", "stages")
# At 1e11 FLOPs the loss-optimal run's R@3 sits on a floor (0.35-0.37, level with 3e11's), so the
# fitting budgets start at 3e11, where R@3 rises with compute.
DEFAULT_BUDGETS = (3e11, 6e11, 1.2e12)
DEFAULT_HOLDOUT = 2.4e12
DEFAULT_WIDTHS = (8, 12, 16, 24, 32, 48, 64)
DEFAULT_HOLDOUT_WIDTHS = (16, 24, 32)
DEFAULT_AR_WIDTHS = (8, 16, 24, 32, 48, 64, 96)
DEFAULT_AR_HOLDOUT_WIDTHS = (32, 48, 64)
FAMILIES = {"diffusion": ("diffusion",), "autoregressive": ("autoregressive",), "both": ("diffusion", "autoregressive")}


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
    family_names = str(opts.get("families", "diffusion"))
    if family_names not in FAMILIES:
        raise ValueError(f"configs/sweeps/cpu_isoflop.py: families={family_names!r}; choose one of {', '.join(FAMILIES)}")
    batch = int(opts.get("batch", 64))
    clips = int(opts.get("clips", 4096))
    replications = int(opts.get("replications", 3))

    c = ml_collections.ConfigDict()
    c.name = "cpu_isoflop"
    c.runlocal = True
    points = []
    if "diffusion" in FAMILIES[family_names]:
        points += budget_points("diffusion", ladder.ladder(widths + holdout_widths), widths, holdout_widths,
                                budgets, holdout, per_budget)
    c.holdout_budgets = [holdout]
    c = cpu_budget_stages(c, batch=batch, clips=clips, replications=replications,
                          stage_size=str(opts.get("stages", "XS")))
    if "autoregressive" in FAMILIES[family_names]:
        ar_widths = [int(w) for w in _numbers(opts.get("ar_widths"), DEFAULT_AR_WIDTHS)]
        ar_holdout = [int(w) for w in _numbers(opts.get("ar_holdout_widths"), DEFAULT_AR_HOLDOUT_WIDTHS)]
        codebook = int(opts.get("codebook", 512))
        points += budget_points("autoregressive", ladder.ladder(ar_widths + ar_holdout, ladder.GATED_RULE),
                                ar_widths, ar_holdout, budgets, holdout, int(opts.get("ar_sizes_per_budget", 5)),
                                codebook=codebook)
        c.fsq = dict(config="configs/fsq.py:size=S",
                     overrides=[f"train.steps={int(opts.get('fsq_steps', 1500))}", "train.lr=1e-3",
                                "train.batch_size=64", "train.warmup_steps=50", "train.log_every=100"])
        # The prefix-LM samples tokens (no DDIM steps): its own evaluation arguments.
        c.evaluate.by_family = {"autoregressive": short_evaluation_args(replications, ["--option", "top_k=20"])}
    c.points = points
    return c


def budget_points(family: str, rungs: dict, widths, holdout_widths, budgets, holdout: float, per_budget: int,
                  codebook: int | None = None) -> list[dict]:
    """One family's points: a sliding window of `per_budget` widths per fitting budget, then
    `holdout_widths` at the held-out budget."""

    def point(width, budget):
        name = ladder.label(width)
        entry = dict(family=family, size="T", label=name, data=1.0, compute_budget=budget, seed=0,
                     overrides=list(rungs[name]))
        if codebook is not None:
            entry["codebook"] = codebook
        return entry

    points = [point(w, b) for b in budgets for w in window(widths, b, budgets, per_budget)]
    return points + [point(w, holdout) for w in sorted(holdout_widths)]


def short_evaluation_args(replications: int, extra=()) -> list[str]:
    """The sweep's short evaluation (3 replications, few multimodality prompts, no text check)."""
    return ["--replications", str(replications), *extra, "--mm-texts", "8", "--mm-generations", "4",
            "--no-text-check"]


# Shared-stage recipes (evaluator and text tower): T is small and quick; XS is the
# quickstart's recipe, whose tower carries more of each caption to the generators (at the
# same budget a d16 point's R@3 rose from 0.34 to 0.42 with it).
_XS = ["train.steps=400", "train.batch_size=64", "train.lr=5e-4", "train.warmup_steps=40", "train.ckpt_every=400"]
STAGE_RECIPES = {  # size -> (config option, evaluator overrides, text tower overrides)
    "T": ("size=T,runlocal", ["train.steps=600"], ["train.steps=600", "train.ckpt_every=600"]),
    "XS": ("size=XS", _XS, _XS),
}


def cpu_budget_stages(c, *, batch: int, clips: int, replications: int, stage_size: str = "T"):
    """What every CPU compute-budget sweep shares: the budget-tied recipe of its points, one
    synthetic dataset, an evaluator and a text tower of `stage_size` (STAGE_RECIPES), and a
    short evaluation."""
    if stage_size not in STAGE_RECIPES:
        raise ValueError(f"stage size {stage_size!r}: choose one of {', '.join(STAGE_RECIPES)}")
    spec, evaluator_overrides, tower_overrides = STAGE_RECIPES[stage_size]
    c.common_overrides = [f"train.batch_size={batch}", "train.warmup_fraction=0.05", "train.log_every=100",
                          "train.ckpt_every=1000000", "train.lr=2e-3", "train.ema_decay=0.99"]
    c.data = dict(dir=None, num_synthetic_clips=clips, num_test_clips=256)
    c.evaluator = dict(config=f"configs/evaluator.py:{spec}", overrides=list(evaluator_overrides))
    c.text_tower = dict(config=f"configs/text_tower.py:{spec}", overrides=list(tower_overrides))
    c.evaluate = dict(args=short_evaluation_args(replications, ["--steps", "10"]))
    return c
