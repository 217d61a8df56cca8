"""DDIM sampling throughput of the diffusion family with classifier-free guidance.

Times the jitted reverse process (`handx_jax.diffusion.sampling.sample`: one `lax.scan`,
cond and null condition in one batch of 2B) at batch 64, 50 respaced steps, guidance 2.5,
for the listed sizes, on randomly initialised parameters (speed does not depend on the
weights). Reports samples/s, the denoiser's achieved GFLOP/s (analytic forward FLOPs x
2B x steps) and its fraction of a float32 matmul peak measured in the same run.

    python tools/bench_sampling.py [--sizes XS,S] [--batch 64] [--steps 50] [--repeats 2] [--compare-options]

`--compare-options` also times the sampler compiled with XLA's default CPU fusion
(`HANDX_XLA_INFERENCE_OPTIONS=0`, see `handx_jax.jax_setup`), interleaved with the default.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of an n x n matmul, best of `repeats`."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def bench(size: str, batch: int, steps: int, guidance: float, repeats: int, compare: bool = False) -> dict:
    import jax

    from handx_jax import configlib
    from handx_jax.diffusion.bench import sampling_timer
    from handx_jax.diffusion.task import DiffusionTask
    from handx_jax.models import diffusion as diffusion_model

    config = configlib.load_config(os.path.join(ROOT, "configs", "diffusion.py") + f":size={size}")
    task = DiffusionTask(config)
    params = task.init_params(jax.random.key(0))
    denoiser_fwd = diffusion_model.forward_flops(config) - _text_flops(config)
    passes = 2 if guidance != 1.0 else 1
    flops = denoiser_fwd * batch * passes * steps
    settings = ("1", "0") if compare else (os.environ.get("HANDX_XLA_INFERENCE_OPTIONS", "1"),)
    run = sampling_timer(task, params, batch_size=batch, steps=steps, guidance=guidance)
    runs = {s: [] for s in settings}
    compile_s = {}
    for r in range(repeats):  # settings interleaved, so both see the same machine
        for s in settings:
            os.environ["HANDX_XLA_INFERENCE_OPTIONS"] = s  # read by the sampler on every call
            if s not in compile_s:
                compile_s[s] = run(0)
            runs[s].append(run(r + 1))
    os.environ["HANDX_XLA_INFERENCE_OPTIONS"] = settings[0]
    best = {s: min(v) for s, v in runs.items()}
    median = {s: sorted(v)[len(v) // 2] for s, v in runs.items()}
    row = {"size": size, "compile_s": compile_s[settings[0]], "seconds": best[settings[0]],
           "samples_per_s": batch / best[settings[0]], "gflops": flops / best[settings[0]] / 1e9}
    if compare:
        row.update(default_seconds=best["0"], median_seconds=median["1"], default_median_seconds=median["0"])
    return row


def _text_flops(config) -> float:
    """Text-encoder part of `forward_flops` (run once per sample, not per step)."""
    import copy

    from handx_jax.models import diffusion as diffusion_model

    no_text = copy.deepcopy(config)
    no_text.model.text_layers = 0
    return diffusion_model.forward_flops(config) - diffusion_model.forward_flops(no_text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="XS,S")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare-options", action="store_true",
                        help="also time XLA's default CPU fusion (HANDX_XLA_INFERENCE_OPTIONS=0), interleaved")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from handx_jax import jax_setup

    jax_setup.setup()
    import jax

    peak = matmul_peak()
    load = os.getloadavg()[0]
    rows = [bench(s, args.batch, args.steps, args.guidance, args.repeats, args.compare_options)
            for s in args.sizes.split(",")]
    peak_after = matmul_peak()
    print(f"DDIM-{args.steps} sampling, guidance {args.guidance} (cond+uncond in one batch), batch {args.batch}, "
          f"{jax.devices()[0].platform} x{jax.device_count()}, float32 matmul peak {peak:.0f} / {peak_after:.0f} GFLOP/s (before/after), "
          f"load average {load:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"| size | compile s | batch s | samples/s | denoiser GFLOP/s | of peak |")
    print(f"|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['compile_s']:.1f} | {r['seconds']:.2f} | {r['samples_per_s']:.1f} | "
              f"{r['gflops']:.0f} | {r['gflops'] / max(peak, peak_after):.0%} |")
    for r in rows:
        if "default_seconds" in r:
            print(f"{r['size']}: seconds per batch, fastest / median of {args.repeats}: inference options "
                  f"{r['seconds']:.2f} / {r['median_seconds']:.2f}, XLA default {r['default_seconds']:.2f} / "
                  f"{r['default_median_seconds']:.2f}: {r['default_seconds'] / r['seconds']:.2f}x / "
                  f"{r['default_median_seconds'] / r['median_seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
