"""Paper Table 2 sweep: diffusion sizes XS/S/M/L (4/8/12/16 layers) x data 5 / 20 / 100 %.

`get_config("steps=200000,seeds=1")`. Options:
  steps    training steps per point (default 200000, the diffusion config's default)
  seeds    seeds per point (default 1)
  sizes    '/'-separated subset of sizes (default XS/S/M/L)
  data_dir HandX data directory (default: none -> one synthetic dataset for the sweep)
Table 2 reports 5 % with 4 layers and 100 % with 8/12/16 layers; the full grid also
gives every size at every ratio for the power2d fit (experiments/table2.py).
"""

import ml_collections

from handx_jax import configlib

OPTIONS = ("steps", "seeds", "sizes", "data_dir")
RATIOS = (0.05, 0.2, 1.0)


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/paper_table2.py")
    steps = int(opts.get("steps", 200_000))
    seeds = int(opts.get("seeds", 1))
    sizes = str(opts.get("sizes", "XS/S/M/L")).split("/")
    c = ml_collections.ConfigDict()
    c.name = "paper_table2"
    c.runlocal = False
    c.points = [dict(family="diffusion", size=size, data=ratio, steps=steps, seed=seed)
                for size in sizes for ratio in RATIOS for seed in range(seeds)]
    c.common_overrides = []
    c.data = dict(dir=opts.get("data_dir"), num_synthetic_clips=4096, num_test_clips=512)
    c.evaluator = dict(config="configs/evaluator.py:size=S", overrides=[])
    c.evaluate = dict(args=[])
    return c
