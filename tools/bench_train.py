"""Training-step throughput and MFU for task configs (default: diffusion XS and S, batch 64).

    python tools/bench_train.py [--config configs/diffusion.py] [--sizes XS,S] [--batch 64]
                                [--steps 5] [--profile DIR]

MFU = analytic training FLOPs per example x examples/s / peak, where the peak is a float32
matmul measured in this same run (`matmul_peaks`, as `handx_jax.train.flops.measure_matmul_peak`). The cores are
shared with other jobs, so both sides are uncontended estimates: `step_s` is the fastest
timed step (`mean_step_s` the average) and the peak is the highest of the matmul
measurements taken before the first size and after every size; the XLA
column uses XLA's own FLOP count of the compiled step instead of the analytic one. The step
runs on stand-in batches (the task's `dummy_batch`, randomised), which time the same as
real ones. `--profile DIR` writes a jax.profiler trace of the timed steps per size.

On cores shared with other jobs wall-clock MFU is meaningless (the matmul peak and the step
are slowed by different amounts), so every figure is also measured in process CPU time:
`mfu_cpu` = (FLOPs / CPU-seconds of the fastest step) / (FLOPs / CPU-seconds of the
fastest matmul), both per core-second, which time-slicing by other processes does not
change. On idle cores it equals the wall-clock MFU when the step keeps every core busy
(and overstates it by the share of time cores wait on each other). The load average
(`os.getloadavg`) is printed before and after.

Sampling: if `handx_jax.diffusion.bench:sampling_throughput(config, params, *, batch_size,
steps, guidance) -> samples/s` exists, its DDIM-50 guided throughput is added to the table
(the hook for the diffusion family).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from handx_jax import configlib, jax_setup  # noqa: E402
from handx_jax.train import flops as flops_lib  # noqa: E402
from handx_jax.train import loop, state as state_lib  # noqa: E402

SAMPLING_HOOK = "handx_jax.diffusion.bench:sampling_throughput"


def stand_in_batch(task, batch_size: int, seed: int = 0) -> dict:
    """Random numeric batch with the task's fields (token ids kept in range)."""
    if not hasattr(task, "dummy_batch"):
        raise SystemExit("the task has no dummy_batch(batch_size); benchmark it with real data")
    rng = np.random.default_rng(seed)
    batch = task.dummy_batch(batch_size)
    out = {}
    for k, v in batch.items():
        if k.endswith("_mask") or k == "mask":
            out[k] = np.ones_like(v)
        elif np.issubdtype(v.dtype, np.integer):
            out[k] = rng.integers(1, 100, size=v.shape).astype(v.dtype)
        else:
            out[k] = rng.standard_normal(v.shape).astype(v.dtype)
    return out


def sampling_hook():
    module_name, _, attr = SAMPLING_HOOK.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None


def _time(fn, *args, steps: int) -> float:
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / steps


def time_parts(trainer, state, batch, key, steps: int) -> dict:
    """Seconds per call of the forward loss alone and of loss + gradients (no optimizer), so
    the optimizer/EMA share of the step is the remainder."""
    task = trainer.task
    with trainer.context():
        fwd = jax.jit(lambda p, b, k: task.loss(p, b, k)[0])
        grad = jax.jit(lambda p, b, k: jax.grad(lambda q: task.loss(q, b, k)[0])(p))
        return {"forward_s": _time(fwd, state.params, batch, key, steps=steps),
                "fwd_bwd_s": _time(grad, state.params, batch, key, steps=steps)}


def bench_size(spec: str, batch_size: int, steps: int, peak: float, profile_dir: str | None,
               breakdown: bool = False, sampling: bool = True) -> dict:
    config = configlib.load_config(spec)
    config.train.batch_size = batch_size
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
    config.train.steps = 10 ** 6
    task_probe = loop.load_task(config)
    trainer = loop.Trainer(config, "/tmp", example_batch=stand_in_batch(task_probe, batch_size))
    t0 = time.perf_counter()
    compiled = trainer.compile()
    compile_s = time.perf_counter() - t0
    state = trainer.init_state()
    batch = trainer.example
    key = jax.device_put(jax.random.PRNGKey(1), trainer.replicated)
    for _ in range(2):  # warm-up
        state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics)
    if profile_dir:
        jax.profiler.start_trace(os.path.join(profile_dir, config.get("size", "run")))
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    step_s, mean_step_s = min(times), sum(times) / len(times)
    if profile_dir:
        jax.profiler.stop_trace()
    fpe = float(trainer.task.flops_per_example())
    xla = flops_lib.xla_flops(compiled)
    row = {"size": config.get("size", "?"), "params": state_lib.count_params(state.params),
           "batch": batch_size, "step_s": step_s, "mean_step_s": mean_step_s, "samples_s": batch_size / step_s,
           "gflop_step": fpe * batch_size / 1e9, "xla_gflop_step": xla / 1e9,
           "flop_step": fpe * batch_size, "xla_flop_step": xla,
           "compile_s": compile_s, "loss": float(metrics["loss"]), "step_cpu_s": min(cpu_times)}
    if breakdown:
        row.update(time_parts(trainer, state, batch, key, steps))
    hook = sampling_hook() if sampling else None
    if hook is not None:
        row["ddim50_samples_s"] = float(hook(config, state.ema_params, batch_size=batch_size, steps=50,
                                             guidance=float(config.diffusion.get("guidance", 2.5))))
    return row


def matmul_peaks(n: int = 1536, repeats: int = 6) -> tuple[float, float]:
    """(FLOP/s, FLOP per CPU-second) of the fastest of `repeats` float32 n x n matmuls."""
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        f(a, b).block_until_ready()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return 2.0 * n ** 3 / wall, 2.0 * n ** 3 / cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/diffusion.py")
    p.add_argument("--sizes", default="XS,S", help="comma list passed as size=... to the config")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps per size (after 2 warm-up)")
    p.add_argument("--profile", default=None, help="write jax.profiler traces here")
    p.add_argument("--breakdown", action="store_true",
                   help="also time the forward loss and loss+gradients alone")
    p.add_argument("--no-sampling", action="store_true", help="skip the sampling-throughput hook")
    args = p.parse_args(argv)
    jax_setup.setup()
    load_before = os.getloadavg()
    measured = [matmul_peaks()]
    rows = []
    for size in [s for s in args.sizes.split(",") if s]:
        spec = f"{args.config},size={size}" if ":" in args.config else f"{args.config}:size={size}"
        rows.append(bench_size(spec, args.batch, args.steps, measured[0][0], args.profile,
                               args.breakdown, not args.no_sampling))
        measured.append(matmul_peaks())
    peaks = [m[0] for m in measured]
    peak, peak_cpu = max(peaks), max(m[1] for m in measured)
    for r in rows:
        r["mfu"], r["mfu_xla"] = r["flop_step"] / r["step_s"] / peak, r["xla_flop_step"] / r["step_s"] / peak
        r["mfu_cpu"] = r["flop_step"] / r["step_cpu_s"] / peak_cpu
    cols = ["size", "params", "batch", "step_s", "mean_step_s", "samples_s", "gflop_step", "xla_gflop_step", "mfu",
            "mfu_xla", "step_cpu_s", "mfu_cpu", "compile_s"]
    if args.breakdown:
        cols += ["forward_s", "fwd_bwd_s"]
    if any("ddim50_samples_s" in r for r in rows):
        cols.append("ddim50_samples_s")
    print(f"\n{jax.devices()[0].platform} x{jax.device_count()}, {os.cpu_count()} cores; "
          f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s (highest of {len(peaks)} measured in this run, "
          f"lowest {min(peaks) / 1e9:.1f}); step_s = fastest of {args.steps} timed steps; CPU-time matmul peak "
          f"{peak_cpu / 1e9:.1f} GFLOP per CPU-second; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "n/a")
            if isinstance(v, float):
                v = f"{v:.1%}" if c.startswith("mfu") else f"{v:.4g}"
            cells.append(f"{v:>14}")
        print(" | ".join(cells))
    if sampling_hook() is None:
        print(f"(sampling throughput: add {SAMPLING_HOOK})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
