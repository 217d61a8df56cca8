"""Benchmark the synthetic generator: clips/s and the time for a full dataset write.

    python tools/bench_synth.py --clips 100000 --workers 2

Rows: generation alone in this process (no files) over `--probe` clips, then
`write_split` of `--clips` train clips with `--workers` processes, end to end (both
formats, ground truth, atomic renames), split into generating and writing. Wall time
and CPU time (this process plus its workers) are both shown, with the load average,
because the machine may be shared: clips per CPU-second is the figure that does not
depend on what else runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

from handx_jax.data import synthetic
from handx_jax.data.synthetic import poses


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--probe", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", default=None, help="directory to write into (default: temp)")
    args = ap.parse_args(argv)

    rows = []
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu()
    poses.pinch_library()
    rows.append(("pinch IK library (once per process)", None, time.perf_counter() - t0,
                 _cpu() - c0))

    t0, c0 = time.perf_counter(), _cpu()
    count = 0
    for out in synthetic.generate(args.probe, "train", frames=args.frames, workers=1):
        count += len(out["names"])
    rows.append((f"generate in memory, 1 process", count, time.perf_counter() - t0,
                 _cpu() - c0))

    if args.out:
        os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        timings = {}
        t0, c0 = time.perf_counter(), _cpu()
        paths = synthetic.write_split(tmp, "train", args.clips, frames=args.frames,
                                      workers=args.workers, progress=True, timings=timings)
        elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
        size = sum(os.path.getsize(p) for p in paths.values()) / 2 ** 30
    rows.append((f"  of which generating ({args.workers} workers)", args.clips,
                 timings["generate_s"], None))
    rows.append(("  of which writing 4 files", args.clips, timings["write_s"], None))
    rows.append((f"write_split end to end ({size:.2f} GiB)", args.clips, elapsed, cpu))
    load1 = os.getloadavg()[0]

    print(f"synthetic generator benchmark: {args.frames} frames/clip, {os.cpu_count()} CPUs, "
          f"load average {load0:.1f} -> {load1:.1f}")
    print(f"| {'stage':<40} | {'clips':>7} | {'wall s':>7} | {'clips/s':>8} | {'CPU s':>7} "
          f"| {'clips/CPU-s':>11} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 13}|")
    for name, n, sec, cpu in rows:
        rate = f"{n / sec:8.0f}" if n and sec > 0 else f"{'-':>8}"
        cpu_s = f"{cpu:7.1f}" if cpu is not None else f"{'-':>7}"
        cpu_rate = f"{n / cpu:11.0f}" if n and cpu else f"{'-':>11}"
        print(f"| {name:<40} | {str(n or '-'):>7} | {sec:7.1f} | {rate} | {cpu_s} | {cpu_rate} |")
    full = rows[-1]
    print(f"time for 100,000 clips at the end-to-end wall rate: "
          f"{full[2] / full[1] * 100000 / 60:.1f} min "
          f"({'measured' if full[1] == 100000 else 'extrapolated'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
