"""Prefix-LM configs over FSQ motion tokens (sizes, recipe, decoding: docs/autoregressive.md).

`get_config("size=8x512,codebook=1024,runlocal")`. Options:
  size      one of SIZES below, named layers x width (default 8x512); T is a tiny size
            for tests.
  codebook  nominal FSQ codebook size, one of 512, 1024, 2048, 4096, 65536 (default 512);
            the vocabulary is the actual codebook (the product of the FSQ levels) + END + PAD.
  fsq       the trained FSQ tokenizer's run directory (`model.fsq_workdir`); its codebook
            must match `codebook`, and `handx tokenize` must have written its tokens.
  data      fraction of the training split, 0 < data <= 1 (default 1.0; nested subsets).
  runlocal  small batch and few steps for a CPU smoke run.
  text      what conditions the model (default tower; see configs/diffusion.py): tower or file.
"""

import ml_collections

from handx_jax import configlib
from handx_jax.autoregressive import fsq
from handx_jax.models.prefix_lm import NUM_PREFIX, swiglu_hidden

text_tower_config = configlib.load_module("configs/text_tower.py")

# size -> (layers, heads, width). Rows after T are HandX's table (MotionMillion / ScaMo).
SIZES = {
    "T": (2, 2, 64),
    "8x512": (8, 8, 512),
    "12x768": (12, 12, 768),
    "16x1024": (16, 16, 1024),
    "24x1024": (24, 16, 1024),
    "36x1280": (36, 20, 1280),
    "48x1536": (48, 24, 1536),
    "24x3200": (24, 32, 3200),
}
# Parameter counts HandX reports for its first three sizes: totals with embeddings and head
# (so they move with the codebook) and with its text projection.
PAPER_PARAMS = {"8x512": 29.63e6, "12x768": 92.27e6, "16x1024": 215.31e6}
OPTIONS = ("size", "codebook", "fsq", "data", "runlocal", "text")
TEXT_MODES = ("tower", "file")
SOURCE = "configs/autoregressive.py"


def get_config(arg=None):
    opts = configlib.parse_options(arg, OPTIONS, SOURCE)
    size = configlib.pick_size(opts, SIZES, "8x512", SOURCE)
    nominal = int(opts.get("codebook", 512))
    if nominal not in fsq.LEVELS:
        raise ValueError(f"{SOURCE}: codebook={nominal}; choose one of {', '.join(map(str, fsq.LEVELS))}")
    text = str(opts.get("text", "tower"))
    if text not in TEXT_MODES:
        raise ValueError(f"{SOURCE}: text={text!r}; choose one of {', '.join(TEXT_MODES)}")
    runlocal = bool(opts.get("runlocal", False))
    tower_size = "T" if size == "T" else "XS"
    layers, heads, width = SIZES[size]

    c = ml_collections.ConfigDict()
    c.task = "handx_jax.autoregressive.lm_task:PrefixLMTask"
    c.family = "autoregressive"
    c.size = size

    c.model = ml_collections.ConfigDict()
    c.model.num_layers = layers
    c.model.num_heads = heads
    c.model.d_model = width
    c.model.mlp_dim = swiglu_hidden(width, 32 if size == "T" else 256)
    c.model.codebook = nominal
    c.model.codebook_size = fsq.codebook_size(fsq.levels_for(nominal))  # vocabulary = this + END + PAD
    c.model.downsample = 2  # frames per token of the FSQ run (checked against it)
    c.model.max_tokens = 30  # motion tokens per clip: data.seq_len // downsample
    c.model.num_prefix = NUM_PREFIX
    c.model.rope_base = 10000.0
    c.model.dtype = "float32"
    c.model.cond_dropout = 0.1  # classifier-free guidance: null prefix rate in training
    c.model.fsq_workdir = str(opts.get("fsq", ""))
    c.model.fsq_key = ""  # filled in from the FSQ run: names its token files
    # Caption embeddings, exactly as the diffusion family (configs/diffusion.py).
    c.model.text = text
    c.model.text_tower = ""
    c.model.text_tower_config = f"configs/text_tower.py:size={tower_size}" + (",runlocal" if runlocal else "")
    c.model.text_embed_dim = text_tower_config.embed_dim(tower_size)
    c.model.text_embeddings_path = ""
    c.model.text_key = ""

    c.decoding = ml_collections.ConfigDict()
    c.decoding.temperature = 1.0  # 0 = greedy (HandX)
    c.decoding.top_k = 0  # 0 = off
    c.decoding.top_p = 1.0  # 1 = off
    c.decoding.guidance = 1.0  # 1 = no classifier-free guidance

    c.data = configlib.data_config(opts, SOURCE, small=runlocal)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 60 if runlocal else 150_000
    c.train.batch_size = 8 if runlocal else 128  # HandX (111M): batch 128, lr 3e-4
    c.train.lr = 1e-3 if runlocal else 3e-4
    c.train.warmup_fraction = 0.1  # 10 % linear warmup, then cosine to the run's end
    c.train.warmup_steps = 0
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.weight_decay = 1e-6
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.9 if runlocal else 0.999
    c.train.seed = 0
    c.train.log_every = 5 if runlocal else 100
    c.train.ckpt_every = 30 if runlocal else 5000
    c.train.keep_checkpoints = 3
    c.train.eval_every = 0  # held-out token NLL (eval/loss) after the last step
    c.train.eval_batches = 8

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    return c
