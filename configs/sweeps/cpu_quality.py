"""Data quality as a scaling axis: two sizes x three synthetic quality levels, equal data size.

Every point trains on 4096 synthetic clips made from the same programs: `high` clean,
`medium` and `low` with joint and wrist jitter, dropped frames and corrupted caption
triplets (docs/synthetic.md). All share the clean dataset's tokenizer, normalisation
statistics, text tower and evaluator, and are scored on the same clean test split, so
their held-out losses and R@3 are directly comparable. Each size trains for one compute
budget (schedule tied to it, as in the IsoFLOP sweep).

Options: widths ('+'-separated, default 16+32), budget (FLOPs, default 5e11),
qualities (default high+medium+low), clips (default 4096), batch (default 64),
replications (default 3).
"""

import ml_collections

from handx_jax import configlib
from handx_jax.scaling import ladder

isoflop = configlib.load_module("configs/sweeps/cpu_isoflop.py")

OPTIONS = ("widths", "budget", "qualities", "clips", "batch", "replications")


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/cpu_quality.py")
    widths = [int(float(w)) for w in str(opts.get("widths", "16+32")).split("+") if w]
    qualities = [q for q in str(opts.get("qualities", "high+medium+low")).split("+") if q]
    budget = float(opts.get("budget", 5e11))
    batch = int(opts.get("batch", 64))
    clips = int(opts.get("clips", 4096))
    rungs = ladder.ladder(widths)

    c = ml_collections.ConfigDict()
    c.name = "cpu_quality"
    c.runlocal = True
    c.points = [dict(family="diffusion", size="T", label=name, data=1.0, compute_budget=budget, seed=0,
                     quality=quality, overrides=list(rungs[name]))
                for quality in qualities for name in rungs]
    return isoflop.cpu_budget_stages(c, batch=batch, clips=clips, replications=int(opts.get("replications", 3)))
