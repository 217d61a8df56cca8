"""Prefix-LM decode throughput with and without the key/value cache.

Times `handx_jax.autoregressive.decoding.decode` (one jitted `lax.while_loop`) at batch 64,
greedy, every row forced to the full `model.max_tokens` tokens (END banned until then, so
both paths do the same number of steps), on randomly initialised parameters (speed does not
depend on the weights), for the listed sizes of configs/autoregressive.py. Without the
cache every step recomputes the whole sequence, as HandX's decoder does. Prints tokens/s
(batch x tokens / wall time, best of `--repeats` after one compiling call) and the ratio.

    python tools/bench_decode.py [--sizes T,8x512] [--batch 64] [--repeats 2] [--codebook 512]
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(size: str, batch: int, repeats: int, codebook: int) -> dict:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from handx_jax import configlib
    from handx_jax.autoregressive import decoding
    from handx_jax.autoregressive.lm_task import PrefixLMTask

    config = configlib.load_config(os.path.join(ROOT, "configs", "autoregressive.py") + f":size={size},codebook={codebook}")
    task = PrefixLMTask(config)
    params = nn.unbox(task.init_params(jax.random.key(0)))
    text = np.random.default_rng(0).standard_normal((batch, 3, int(config.model.text_embed_dim))).astype(np.float32)
    n = int(config.model.max_tokens)
    row = {"size": size, "tokens": n}
    args = (params, jnp.asarray(text), jnp.zeros((batch, 0), jnp.int32), jax.random.key(0), jnp.float32(0.0),
            jnp.int32(0), jnp.float32(1.0), jnp.float32(1.0), jnp.int32(n))  # greedy, END banned before n
    for use_cache in (True, False):
        compiled = decoding._decoder(task.model, n, 0, False, use_cache).lower(*args).compile()  # not timed
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            tokens, lengths = compiled(*args)
            lengths.block_until_ready()
            best = min(best, time.perf_counter() - t)
        assert (np.asarray(lengths) == n).all()
        row["cache" if use_cache else "full"] = batch * n / best
    row["ratio"] = row["cache"] / row["full"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="T,8x512")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--codebook", type=int, default=512)
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from handx_jax import host_memory

    host_memory.tune_malloc()  # as jax_setup.setup() does for the commands; no compile cache here
    rows = [bench(s, args.batch, args.repeats, args.codebook) for s in args.sizes.split(",")]
    load = os.getloadavg()
    print(f"decode throughput, batch {args.batch}, greedy, codebook {args.codebook} "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(f"{'size':>8} {'tokens':>6} {'cached tok/s':>13} {'full tok/s':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['size']:>8} {r['tokens']:>6} {r['cache']:>13.1f} {r['full']:>11.1f} {r['ratio']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
