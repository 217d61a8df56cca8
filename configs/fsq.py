"""FSQ motion tokenizer configs (docs/autoregressive.md, section Tokenizer).

`get_config("S,codebook=1024")` or `get_config("size=S,codebook=1024,runlocal")`. Options:
  size      one of SIZES below (a bare size name works too); default S (CPU-sized);
            T is a tiny size for tests, L is HandX's width 512.
  codebook  nominal codebook size, one of 512, 1024, 2048, 4096, 65536 (default 512); the
            FSQ levels come from HandX's table and the actual codebook is their product
            (1024 -> [8,5,5,5] = 1000 codes).
  down      downsampling levels, each x2 in time (default 1: 60 frames -> 30 tokens).
  patch     Haar wavelet patch size, a power of two (default 1 = off); multiplies the
            downsampling factor.
  data      fraction of the training split, 0 < data <= 1 (default 1.0).
  runlocal  small batch and few steps for a CPU smoke run.
"""

import ml_collections

from handx_jax import configlib
from handx_jax.autoregressive.fsq import LEVELS  # nominal codebook size -> FSQ levels (HandX's table)

# size -> (width, residual blocks per level); HandX/MotionMillion use width 512, 3 blocks.
SIZES = {
    "T": (16, 1),
    "S": (128, 3),
    "M": (256, 3),
    "L": (512, 3),
}
OPTIONS = ("size", "codebook", "down", "patch", "data", "runlocal")
SOURCE = "configs/fsq.py"


def _options(arg):
    """parse_options, with a bare size name (`T`, `S,codebook=1024`) read as size=<name>."""
    opts = configlib.parse_arg(arg)
    bare = [k for k, v in opts.items() if v is True and k in SIZES]
    for key in bare:
        if "size" in opts:
            raise ValueError(f"{SOURCE}: size given twice ({key!r} and size={opts['size']!r})")
        del opts[key]
        opts["size"] = key
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{SOURCE}: unknown option(s) {unknown}; allowed: {', '.join(OPTIONS)} or a size "
                         f"({', '.join(SIZES)})")
    return opts


def get_config(arg=None):
    opts = _options(arg)
    size = configlib.pick_size(opts, SIZES, "S", SOURCE)
    nominal = int(opts.get("codebook", 512))
    if nominal not in LEVELS:
        raise ValueError(f"{SOURCE}: codebook={nominal}; choose one of {', '.join(map(str, LEVELS))}")
    down, patch = int(opts.get("down", 1)), int(opts.get("patch", 1))
    if down < 0:
        raise ValueError(f"{SOURCE}: down={down} must be >= 0")
    if patch < 1 or patch & (patch - 1):
        raise ValueError(f"{SOURCE}: patch={patch} must be a power of two")
    runlocal = bool(opts.get("runlocal", False))
    width, depth = SIZES[size]

    c = ml_collections.ConfigDict()
    c.task = "handx_jax.autoregressive.fsq_task:FsqTask"
    c.family = "fsq"
    c.size = size

    c.model = ml_collections.ConfigDict()
    c.model.width = width
    c.model.depth = depth
    c.model.dilation_growth = 3
    c.model.down_levels = down
    c.model.patch_size = patch
    c.model.codebook = nominal  # nominal; the actual size is prod(levels)
    c.model.levels = LEVELS[nominal]

    c.fsq = ml_collections.ConfigDict()
    c.fsq.loss_vel = 0.5
    c.fsq.loss_bone = 0.1
    c.fsq.smooth_l1_beta = 1.0

    c.data = configlib.data_config(opts, SOURCE, small=runlocal or size == "T")

    c.train = ml_collections.ConfigDict()
    c.train.steps = 60 if runlocal else 3000
    c.train.batch_size = 8 if runlocal else 64
    c.train.lr = 1e-3  # measured on CPU at batch 64 (docs/autoregressive.md); HandX: 2e-4 at batch 512
    c.train.warmup_steps = 5 if runlocal else 50
    c.train.weight_decay = 0.0
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.9 if runlocal else 0.99
    c.train.seed = 0
    c.train.log_every = 5 if runlocal else 50
    c.train.ckpt_every = 30 if runlocal else 1000
    c.train.keep_checkpoints = 2
    c.train.eval_every = 0  # held-out reconstruction (eval/loss, eval/mpjpe_mm, ...) after the last step

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    return c
