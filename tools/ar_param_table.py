"""Parameter table of every prefix-LM size, beside HandX's reported counts; optional XLA FLOP check.

Counts are exact (`handx_jax.models.prefix_lm.parameter_counts`, equal to the built model's
in tests/autoregressive/test_lm_task.py):
  blocks    the transformer layers and final norm (no embeddings, head or text projection)
  text      our caption prefix: three per-role kernels (E x d, E = the text tower's width)
            plus three learned null-prefix tokens for guidance
  emb+head  token embedding and untied vocabulary head, 2 x (codes + 2) x d, per codebook
  HandX     blocks + a T5-base projection 768 x d (+ d bias) + emb+head at the codebook that
            reproduces HandX's reported total
`--xla` also compiles one training step (forward + backward, batch 1, shapes only) per size
and prints XLA's FLOP count against the analytic 3 x forward count.

    python tools/ar_param_table.py [--xla] [--sizes T,8x512,...] [--markdown]
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODEBOOKS = (512, 1024, 2048, 4096, 65536)  # nominal; actual sizes are the FSQ level products
T5_BASE = 768
# (size, nominal codebook) whose HandX-layout count reproduces the reported figure.
HANDX = {"8x512": (2048, 29.63e6), "12x768": (4096, 92.27e6), "16x1024": (4096, 215.31e6)}


def rows(sizes):
    from handx_jax import configlib
    from handx_jax.autoregressive.lm_task import parameter_counts

    out = []
    for size in sizes:
        per = {}
        for nominal in CODEBOOKS:
            config = configlib.load_config(os.path.join(ROOT, "configs", "autoregressive.py") + f":size={size},codebook={nominal}")
            per[nominal] = (config, parameter_counts(config))
        config, counts = per[512]
        m = config.model
        row = {"size": size, "shape": f"{m.num_layers}/{m.num_heads}/{m.d_model}", "mlp": int(m.mlp_dim),
               "blocks": counts["body"], "text": counts["text"], "E": int(m.text_embed_dim),
               "emb_head": {n: per[n][1]["embedding"] + per[n][1]["head"] for n in CODEBOOKS},
               "codes": {n: int(per[n][0].model.codebook_size) for n in CODEBOOKS},
               "total": {n: per[n][1]["total"] for n in CODEBOOKS}}
        if size in HANDX:
            nominal, reported = HANDX[size]
            d = int(m.d_model)
            row["handx_layout"] = counts["body"] + T5_BASE * d + d + row["emb_head"][nominal]
            row["handx"] = (nominal, reported)
        out.append(row)
    return out


def xla_check(size: str) -> tuple[float, float]:
    import flax.linen as nn
    import jax
    import numpy as np

    from handx_jax import configlib
    from handx_jax.autoregressive.lm_task import PrefixLMTask
    from handx_jax.train import flops

    config = configlib.load_config(os.path.join(ROOT, "configs", "autoregressive.py") + f":size={size}")
    task = PrefixLMTask(config)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in task.dummy_batch(1).items()}
    params = jax.eval_shape(lambda: nn.unbox(task.init_params(jax.random.key(0))))
    grad = jax.jit(jax.grad(lambda p, b, r: task.loss(p, b, r)[0]))
    compiled = grad.lower(params, batch, jax.ShapeDtypeStruct((), jax.random.key(0).dtype)).compile()
    return flops.xla_flops(compiled), task.flops_per_example()


def main(argv=None) -> int:
    from handx_jax import configlib

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(configlib.load_module(os.path.join(ROOT, "configs", "autoregressive.py")).SIZES))
    p.add_argument("--xla", action="store_true", help="compile each size's training step and compare FLOPs")
    args = p.parse_args(argv)
    table = rows(args.sizes.split(","))
    m = lambda x: f"{x / 1e6:.2f}M"
    print("| size | layers/heads/width | SwiGLU | blocks | text (ours) | emb+head 512 / 4096 / 65536 "
          "| total 512 / 4096 / 65536 | HandX layout | HandX reported |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        eh = " / ".join(m(r["emb_head"][n]) for n in (512, 4096, 65536))
        tot = " / ".join(m(r["total"][n]) for n in (512, 4096, 65536))
        hl = f"{m(r['handx_layout'])} (codebook {r['handx'][0]})" if "handx" in r else "-"
        rep = m(r["handx"][1]) if "handx" in r else "-"
        print(f"| {r['size']} | {r['shape']} | {r['mlp']} | {m(r['blocks'])} | {m(r['text'])} | {eh} | {tot} | {hl} | {rep} |")
    print("\ncodebooks (nominal -> actual): " + ", ".join(f"{n} -> {table[0]['codes'][n]}" for n in CODEBOOKS))
    if args.xla:
        print("\n| size | analytic train FLOPs / example | XLA | XLA / analytic |")
        print("|---|---|---|---|")
        for size in args.sizes.split(","):
            xla, analytic = xla_check(size)
            print(f"| {size} | {analytic:.4g} | {xla:.4g} | {xla / analytic:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
