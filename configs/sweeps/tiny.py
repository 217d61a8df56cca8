"""Tiny CPU sweep on synthetic data: three small diffusion sizes x data 25 % / 100 %.

Sizes are the diffusion config's `T` (2 layers, d 64) reshaped through model overrides:
T1 (1 layer, d 32), T (2 layers, d 64) and T3 (3 layers, d 96); the label becomes the
run's `size`. Every point uses `runlocal` (batch 8) with `steps` steps; the evaluator is
the tiny `T` evaluator trained for `evaluator_steps`; every point is conditioned on the
caption embeddings of one tiny `T` text tower trained for `tower_steps`. Meant to run end to end (launch,
evaluate, fit, plot) in well under 45 minutes on 2 CPU cores. Options: steps (default
1000), evaluator_steps (default 600), tower_steps (default 600), clips (synthetic train
clips, default 512), replications (evaluation replications, default 3), sizes ('/'-separated
subset of T1/T/T3, default all three).
"""

import ml_collections

from handx_jax import configlib

OPTIONS = ("steps", "evaluator_steps", "tower_steps", "clips", "replications", "sizes")
SIZES = {
    "T1": ["model.num_layers=1", "model.d_model=32", "model.mlp_dim=64", "model.num_heads=2"],
    "T": [],
    "T3": ["model.num_layers=3", "model.d_model=96", "model.mlp_dim=192", "model.num_heads=2"],
}
RATIOS = (0.25, 1.0)


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/tiny.py")
    steps = int(opts.get("steps", 1000))
    sizes = str(opts.get("sizes", "/".join(SIZES))).split("/")
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown or not sizes:
        raise ValueError(f"configs/sweeps/tiny.py: sizes {unknown or sizes}; choose from {'/'.join(SIZES)}")
    c = ml_collections.ConfigDict()
    c.name = "tiny"
    c.runlocal = True
    c.points = [dict(family="diffusion", size="T", label=label, data=ratio, steps=steps, seed=0,
                     overrides=list(overrides))
                for label, overrides in SIZES.items() if label in sizes for ratio in RATIOS]
    c.common_overrides = ["train.log_every=50", f"train.ckpt_every={steps}"]
    c.data = dict(dir=None, num_synthetic_clips=int(opts.get("clips", 512)), num_test_clips=64)
    c.evaluator = dict(config="configs/evaluator.py:size=T,runlocal",
                       overrides=[f"train.steps={int(opts.get('evaluator_steps', 600))}"])
    tower_steps = int(opts.get("tower_steps", 600))
    c.text_tower = dict(config="configs/text_tower.py:size=T,runlocal",
                        overrides=[f"train.steps={tower_steps}", f"train.ckpt_every={tower_steps}"])
    # Few sampling steps and a small MultiModality set keep evaluation to about a minute.
    c.evaluate = dict(args=["--replications", str(int(opts.get("replications", 3))), "--steps", "10",
                            "--mm-texts", "8", "--mm-generations", "4"])
    return c
