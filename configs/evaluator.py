"""Contrastive text-motion evaluator configs (docs/eval.md).

`get_config("size=S,runlocal")`. Options:
  size     one of SIZES below (default S, TMR-like: 4 layers, d 256, latent 256);
           T is a tiny size for tests, XS a small one for quick CPU runs.
  runlocal small batch and few steps for a CPU smoke run.
The evaluator is trained once per dataset and frozen; `handx evaluator train` runs it.
"""

import ml_collections

from handx_jax import configlib

# size -> (layers, d_model, mlp_dim, heads, text_layers, text_d_model, text_mlp_dim, text_heads)
SIZES = {
    "T": (1, 64, 128, 2, 1, 64, 128, 2),
    "XS": (2, 128, 256, 4, 1, 128, 256, 4),
    "S": (4, 256, 1024, 4, 2, 256, 1024, 4),
}
OPTIONS = ("size", "runlocal")


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/evaluator.py")
    size = configlib.pick_size(opts, SIZES, "S", "configs/evaluator.py")
    runlocal = bool(opts.get("runlocal", False))
    layers, d, ff, heads, t_layers, t_d, t_ff, t_heads = SIZES[size]

    c = ml_collections.ConfigDict()
    c.task = "handx_jax.eval.evaluator_task:EvaluatorTask"
    c.size = size
    c.family = "evaluator"

    c.model = ml_collections.ConfigDict()
    c.model.feature_dim = 126  # joint_pos: global joint positions, centred per clip
    c.model.latent_dim = 256
    c.model.num_layers = layers
    c.model.d_model = d
    c.model.mlp_dim = ff
    c.model.num_heads = heads
    c.model.dropout = 0.0
    c.model.dtype = "float32"
    c.model.temperature = 0.07  # InfoNCE
    c.model.vocab_size = 2000
    c.model.text_max_len = 32 if size == "T" else 48
    c.model.text_layers = t_layers
    c.model.text_d_model = t_d
    c.model.text_mlp_dim = t_ff
    c.model.text_heads = t_heads

    c.data = configlib.data_config({}, "configs/evaluator.py", small=runlocal, representation="joint_pos", ratio=1.0)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 60 if runlocal else 20_000
    c.train.batch_size = 16 if runlocal else 64
    c.train.lr = 5e-4 if runlocal else 2e-4
    c.train.warmup_steps = 5 if runlocal else 500
    c.train.weight_decay = 0.0
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.9 if runlocal else 0.99
    c.train.seed = 0
    c.train.log_every = 5 if runlocal else 100
    c.train.ckpt_every = 30 if runlocal else 2000
    c.train.keep_checkpoints = 2

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    return c
