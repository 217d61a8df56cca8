"""MDM-style text-to-motion diffusion configs (sizes and recipe: docs/diffusion.md).

`get_config("size=S,data=0.2,runlocal")`. Options:
  size     one of SIZES below (default XS); T is a tiny size for tests.
  data     fraction of the training split, 0 < data <= 1 (default 1.0; nested subsets).
  runlocal small batch and few steps for a CPU smoke run.
  text     what conditions the model (default tower):
           tower   caption embeddings of the dataset's frozen contrastive text tower,
                   precomputed once per caption (`model.text_tower`, default
                   <data.dir>/text_tower, trained from `model.text_tower_config` when missing);
           file    your own embeddings file (`model.text_embeddings_path`, e.g. T5 or CLIP
                   states computed elsewhere);
           scratch a treble text encoder trained through the diffusion loss: at our data
                   sizes it collapses to one condition for every caption (docs/diffusion.md).
"""

import ml_collections

from handx_jax import configlib

text_tower_config = configlib.load_module("configs/text_tower.py")

# size -> (layers, d_model, mlp_dim, heads, text_layers, text_d_model, text_mlp_dim, text_heads)
# Denoiser rows follow the paper's Table C; the text encoder is ours (trained from scratch).
SIZES = {
    "T": (2, 64, 128, 2, 1, 64, 128, 2),
    "XS": (4, 256, 1024, 4, 2, 256, 1024, 4),
    "S": (8, 512, 1024, 8, 2, 256, 1024, 4),
    "M": (12, 512, 1024, 8, 2, 256, 1024, 4),
    "L": (16, 768, 3072, 12, 2, 256, 1024, 4),
}
# Parameter counts the paper reports (they include their text cross-attention).
PAPER_PARAMS = {"XS": 4.63e6, "S": 26.33e6, "M": 38.95e6, "L": 260.97e6}
OPTIONS = ("size", "data", "runlocal", "text")
TEXT_MODES = ("tower", "file", "scratch")


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, "configs/diffusion.py")
    size = configlib.pick_size(opts, SIZES, "XS", "configs/diffusion.py")
    runlocal = bool(opts.get("runlocal", False))
    text = str(opts.get("text", "tower"))
    if text not in TEXT_MODES:
        raise ValueError(f"configs/diffusion.py: text={text!r}; choose one of {', '.join(TEXT_MODES)}")
    tower_size = "T" if size == "T" else "XS"
    layers, d, ff, heads, t_layers, t_d, t_ff, t_heads = SIZES[size]

    c = ml_collections.ConfigDict()
    c.task = "handx_jax.diffusion.task:DiffusionTask"
    c.size = size
    c.family = "diffusion"

    c.model = ml_collections.ConfigDict()
    c.model.num_layers = layers
    c.model.d_model = d
    c.model.mlp_dim = ff
    c.model.num_heads = heads
    c.model.dropout = 0.0  # >0 enables dropout; its masks cost ~20 % of a CPU step
    c.model.positions = "sinusoidal"  # or "learned"
    c.model.pre_norm = True
    c.model.dtype = "float32"
    c.model.cond_dropout = 0.1  # classifier-free guidance: null condition rate in training
    c.model.text = text
    # tower: the frozen text tower's run directory ('' = <data.dir>/text_tower), the config
    # it is trained from when missing, and the width of its caption embeddings.
    c.model.text_tower = ""
    c.model.text_tower_config = f"configs/text_tower.py:size={tower_size}" + (",runlocal" if runlocal else "")
    c.model.text_embed_dim = text_tower_config.embed_dim(tower_size)
    # The embeddings file: filled in by the trainer for `tower` (with the tokenizer and tower
    # content hashes as `text_key`, checked by every later reader); yours for `file`.
    c.model.text_embeddings_path = ""
    c.model.text_key = ""
    # scratch only: the treble text encoder trained with the denoiser.
    c.model.vocab_size = 2000  # embedding rows; the tokenizer is trained with this upper bound
    c.model.text_max_len = 32 if size == "T" else 64  # synthetic captions: 90th pct ~60 tokens
    c.model.text_layers = t_layers
    c.model.text_d_model = t_d
    c.model.text_mlp_dim = t_ff
    c.model.text_heads = t_heads
    # Run directory (e.g. a contrastive model with the same TrebleTextEncoder dims and
    # tokenizer) whose text_encoder weights initialise ours; '' = random init.
    c.model.text_init_from = ""
    c.model.text_frozen = False  # stop gradients into the text encoder (needs weight_decay 0)

    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.num_steps = 1000
    c.diffusion.schedule = "cosine"
    c.diffusion.loss_rep = 0.5
    c.diffusion.loss_vel = 0.2
    c.diffusion.loss_acc = 0.1
    # Geometric terms on the predicted joints (docs/diffusion.md, "Geometric losses"): squared
    # cm errors of fingertip-fingertip and fingertip-palm distances (weighted up near contact)
    # and of bone lengths. 0 = off.
    c.diffusion.loss_tip = 0.0
    c.diffusion.loss_palm = 0.0
    c.diffusion.loss_bone = 0.0
    c.diffusion.contact_emphasis = 4.0  # extra weight of distances at or below a contact threshold
    c.diffusion.sample_steps = 50
    c.diffusion.guidance = 2.5
    c.diffusion.sampler = "ddim"

    c.data = configlib.data_config(opts, "configs/diffusion.py", small=runlocal)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 60 if runlocal else 200_000
    c.train.batch_size = 8 if runlocal else 64
    c.train.lr = 5e-4 if runlocal else 1e-4  # paper: AdamW 1e-4
    c.train.warmup_steps = 5 if runlocal else 1000
    c.train.warmup_fraction = 0.0  # > 0: warmup is this fraction of the run (overrides warmup_steps)
    c.train.min_lr_ratio = 0.0  # the cosine ends at lr * min_lr_ratio (1.0: constant after warmup)
    c.train.eval_every = 0  # held-out loss every N steps; 0: after the last step only; -1: never
    c.train.eval_batches = 8  # test-split batches per held-out evaluation
    c.train.weight_decay = 0.0
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.999 if not runlocal else 0.9
    c.train.seed = 0
    c.train.log_every = 5 if runlocal else 100
    c.train.ckpt_every = 30 if runlocal else 5000
    c.train.keep_checkpoints = 3

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    return c
