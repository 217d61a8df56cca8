"""Frozen text tower configs: the contrastive text-motion model whose text side conditions
every generator (docs/text.md).

`get_config("size=XS,runlocal")`. Options:
  size     one of SIZES below (default XS); T is a tiny size for tests.
  runlocal small batch and few steps for a CPU smoke run.
It is trained once per dataset (`handx text tower --data DIR`), separately from the scoring
evaluator (another seed, its own run directory), so that the metric stays independent of
the generators' conditioning. The model and objective are the evaluator's
(configs/evaluator.py, same sizes); generators read its per-role caption embeddings, width
`model.text_d_model`, precomputed into `DIR/text_embeddings/`.
"""

from handx_jax import configlib

evaluator_config = configlib.load_module("configs/evaluator.py")

SIZES = evaluator_config.SIZES  # size -> (layers, d, ff, heads, text layers, text d, text ff, text heads)
STEPS = {"T": 200, "XS": 3000, "S": 10_000}
OPTIONS = ("size", "runlocal")


def embed_dim(size: str) -> int:
    """Width of the caption embeddings a tower of `size` writes (its text_d_model)."""
    return SIZES[size][5]


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/text_tower.py")
    size = configlib.pick_size(opts, SIZES, "XS", "configs/text_tower.py")
    runlocal = bool(opts.get("runlocal", False))
    c = evaluator_config.get_config(f"size={size}" + (",runlocal" if runlocal else ""))
    c.family = "text_tower"
    c.model.text_max_len = 32 if size == "T" else 64  # as the generators' captions
    if not runlocal:
        c.train.steps = STEPS[size]
        c.train.lr = 5e-4
        c.train.warmup_steps = max(1, STEPS[size] // 20)
        c.train.ckpt_every = 1000
    c.train.seed = 1  # the scoring evaluator uses seed 0
    c.train.keep_checkpoints = 1
    return c
