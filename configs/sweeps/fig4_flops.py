"""Paper Fig. 4 sweep: diffusion sizes at 5 % data over several training lengths.

R@3 against training FLOPs (params x samples seen), fitted log-linearly as in the paper
(R@3 = 0.4391 log10(FLOPs) - 3.8707, r = 0.96; the largest model saturates).
`get_config("steps=50000/100000/200000")`. Options:
  steps    '/'-separated step counts per size (default 50000/100000/200000)
  sizes    '/'-separated sizes (default XS/S/M/L)
  data     data ratio (default 0.05, the paper's setting)
  data_dir HandX data directory (default: one synthetic dataset for the sweep)
"""

import ml_collections

from handx_jax import configlib

OPTIONS = ("steps", "sizes", "data", "data_dir")


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/fig4_flops.py")
    steps = [int(s) for s in str(opts.get("steps", "50000/100000/200000")).split("/")]
    sizes = str(opts.get("sizes", "XS/S/M/L")).split("/")
    ratio = float(opts.get("data", 0.05))
    c = ml_collections.ConfigDict()
    c.name = "fig4_flops"
    c.runlocal = False
    # One run per (size, length); the label keeps run directories apart.
    c.points = [dict(family="diffusion", size=size, data=ratio, steps=n, seed=0, label=f"{size}-{n // 1000}k")
                for size in sizes for n in steps]
    c.common_overrides = []
    c.data = dict(dir=opts.get("data_dir"), num_synthetic_clips=4096, num_test_clips=512)
    c.evaluator = dict(config="configs/evaluator.py:size=S", overrides=[])
    c.evaluate = dict(args=[])
    return c
