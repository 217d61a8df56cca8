"""Throughput of the text tower stage's caption embedding: N clips x K triplets of distinct
captions per role, tokenised, encoded in batches and written as the embeddings file.

    python tools/bench_text_embed.py [--clips 100000] [--triplets 5] [--size XS] [--batch 512]

The captions are the rules captions of a small synthetic set, each made distinct by a clip
and triplet number (HandX's LLM captions are nearly all distinct); the encoder pads every
caption to `text_max_len`, so its cost does not depend on the words. The tower's weights are
its initialisation: speed does not depend on training. Prints one table: captions per role,
seconds per phase, captions/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from handx_jax import configlib, jax_setup  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=100_000)
    p.add_argument("--triplets", type=int, default=5)
    p.add_argument("--size", default="XS", help="configs/text_tower.py size")
    p.add_argument("--batch", type=int, default=512)
    args = p.parse_args(argv)
    jax_setup.setup()
    import jax
    import numpy as np

    from handx_jax.data import synthetic
    from handx_jax.data import store
    from handx_jax.models import evaluator as evaluator_model
    from handx_jax.text import tokenizer as tokenizer_lib
    from handx_jax.train import text_tower

    with tempfile.TemporaryDirectory() as tmp:
        synthetic.write_dataset(tmp, 200, 8, seed=0)
        clips = store.load_any(store.find_split(tmp, "train"))
        tokenizer_lib.ensure_tokenizer(tmp, 2000)
        tokenizer = tokenizer_lib.load_tokenizer(tmp)
        keys = ("left_annotation", "right_annotation", "interaction_annotation")
        pools = [[c for clip in clips.values() for c in clip[k]] for k in keys]
        n = args.clips * args.triplets
        columns = [[f"{pool[i % len(pool)]} ({i // args.triplets}.{i % args.triplets})" for i in range(n)]
                   for pool in pools]
        config = configlib.load_config(f"configs/text_tower.py:size={args.size}")
        model = evaluator_model.model_from_config(config)
        batch = tokenizer_lib.encode_triples(tokenizer, [("a", "b", "c")], int(config.model.text_max_len))
        params = jax.jit(lambda k: model.init(k, batch, np.zeros((1, 60, 126), np.float32),
                                              np.ones((1, 60), np.float32))["params"])(jax.random.key(0))
        encoder = text_tower.TowerEncoder(None, batch_size=args.batch, loaded=(config, params, tokenizer))
        t0 = time.perf_counter()
        out = encoder.encode_columns(columns, progress=True)
        t1 = time.perf_counter()
        path = tokenizer_lib.save_text_embeddings(os.path.join(tmp, "e.npz"),
                                                  {r: (c, e) for r, c, e in zip(tokenizer_lib.ROLES, columns, out)},
                                                  {"key": "bench"})
        t2 = time.perf_counter()
        table = tokenizer_lib.load_text_embeddings(path)
        t3 = time.perf_counter()
        size_mb = os.path.getsize(path) / 2**20
    assert table.dim == out[0].shape[1]
    total = 3 * n
    print(f"| clips x triplets | captions (3 roles) | tower | tokenise+encode s | write s | read s | captions/s | file MiB | load avg |")
    print(f"|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.clips} x {args.triplets} | {total} | {args.size} (d {encoder.dim}, {encoder.max_len} tokens) | "
          f"{t1 - t0:.1f} | {t2 - t1:.1f} | {t3 - t2:.1f} | {total / (t1 - t0):.0f} | {size_mb:.0f} | "
          f"{os.getloadavg()[0]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
