"""Paper Table 3 sweep: autoregressive prefix-LM sizes x FSQ codebook sizes.

`get_config("steps=150000,sizes=8x512/12x768/16x1024,codebooks=1024/2048/4096")`. Each
codebook's FSQ motion tokenizer is trained once per sweep (a shared stage, like the
evaluator and the text tower, `OUT/fsq/cb<N>`); every point of that codebook tokenizes the
data with it and trains a prefix-LM of its size (configs/autoregressive.py) on the frozen
text tower's caption embeddings. `python experiments/table3.py OUT` lays out the table.
Options:
  steps      LM training steps per point (default 150000, HandX's recipe for 111M)
  fsq_steps  tokenizer training steps (default 100000)
  sizes      '/'-separated LM sizes (default 8x512/12x768/16x1024: HandX's 29.63M /
             92.27M / 215.31M rows)
  codebooks  '/'-separated nominal codebook sizes (default 1024/2048/4096)
  seeds      seeds per point (default 1)
  data_dir   HandX data directory (default: none -> one synthetic dataset for the sweep)
"""

import ml_collections

from handx_jax import configlib

OPTIONS = ("steps", "fsq_steps", "sizes", "codebooks", "seeds", "data_dir")


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/sweeps/paper_table3.py")
    steps = int(opts.get("steps", 150_000))
    sizes = str(opts.get("sizes", "8x512/12x768/16x1024")).split("/")
    codebooks = [int(v) for v in str(opts.get("codebooks", "1024/2048/4096")).split("/")]
    seeds = int(opts.get("seeds", 1))
    c = ml_collections.ConfigDict()
    c.name = "paper_table3"
    c.runlocal = False
    c.points = [dict(family="autoregressive", size=size, data=1.0, steps=steps, seed=seed, codebook=codebook)
                for size in sizes for codebook in codebooks for seed in range(seeds)]
    c.common_overrides = []
    c.data = dict(dir=opts.get("data_dir"), num_synthetic_clips=4096, num_test_clips=512)
    c.evaluator = dict(config="configs/evaluator.py:size=S", overrides=[])
    c.fsq = dict(config="configs/fsq.py:size=L", overrides=[f"train.steps={int(opts.get('fsq_steps', 100_000))}"])
    c.evaluate = dict(args=[])
    return c
