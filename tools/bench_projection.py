"""Kinematic projection throughput and what it does to a motion file.

Projects every clip of a HandX-format or `.clips.npz` file (e.g. `handx sample` output or a
test split) with `handx_jax.hand.projection.project` and prints one table: clips/s (best of
`--repeats` after one compiling call), bone-length deviation and joint-limit violation rate
before and after, and the raw-to-projected MPJPE.

    python tools/bench_projection.py FILE [--num 128] [--repeats 2] [--rounds 1] [--iters 3]
"""

import argparse
import time


def main() -> int:
    import numpy as np

    from handx_jax import host_memory
    from handx_jax.data import store
    from handx_jax.eval import metrics
    from handx_jax.hand import projection

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--num", type=int, default=128, help="clips (the first N; default 128)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--frames", type=int, default=60, help="clips are cut to this many frames")
    args = p.parse_args()
    host_memory.tune_malloc()  # as jax_setup.setup() does for the commands
    clips = store.load_any(args.path)
    motion = np.stack([np.asarray(c["motion"], np.float32)[:args.frames] for c in list(clips.values())[:args.num]])
    kwargs = dict(rounds=args.rounds, iters=args.iters, batch_size=len(motion))
    projection.project(motion, **kwargs)  # compile
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = projection.project(motion, **kwargs)
        best = min(best, time.perf_counter() - t0)
    rows = [("clips", len(motion)), ("clips/s", len(motion) / best),
            ("bone dev. mm, raw", 1e3 * metrics.bone_length_deviation(motion)),
            ("bone dev. mm, projected", 1e3 * metrics.bone_length_deviation(res.motion)),
            ("limit viol., raw", metrics.joint_limit_violation_rate(motion)),
            ("limit viol., projected", metrics.joint_limit_violation_rate(res.motion)),
            ("clips with a violation, projected",
             int(sum(metrics.joint_limit_violation_rate(m[None]) > 0 for m in res.motion))),
            ("MPJPE raw -> projected mm", 1e3 * metrics.mpjpe(res.motion, motion)),
            ("max clip mean change mm", 1e3 * float(res.error.max()))]
    print("| quantity | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.6g} |" if isinstance(value, float) else f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
