"""Input pipeline throughput: samples/s of `pipeline.make_dataset` at batch 64, 60 frames.

Writes a HandX-format train split of random plausible clips into a temp directory (or
uses --data_dir), builds TFDS and the feature cache (not timed), then times batches after
a warm-up. Prints one table: one row per (workers, read threads) setting.

    python tools/bench_pipeline.py [--clips 8192] [--batches 200] [--workers 0,2] [--repeats 3]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from absl import flags

TARGET = 5000.0


def write_clips(data_dir: str, num_clips: int, frames: int, seed: int = 0) -> None:
    from handx_jax.data import handx_format
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(1, 1, 2, 21, 3)).astype(np.float32) * 0.04
    clips = {}
    for i in range(num_clips):
        walk = np.cumsum(rng.normal(size=(frames, 2, 21, 3)).astype(np.float32) * 1e-3, axis=0)
        clips[f"clip_{i:06d}"] = {
            "motion": (base[0] + walk).astype(np.float32),
            "left_annotation": [f"left caption {i} {k}" for k in range(5)],
            "right_annotation": [f"right caption {i} {k}" for k in range(5)],
            "interaction_annotation": [f"relation caption {i} {k}" for k in range(5)],
        }
    handx_format.save_handx(os.path.join(data_dir, "train_can_pos_all_wotextfeat.npz"), clips)


def run(data_dir, batch_size, seq_len, representation, workers, threads, batches, warmup,
        repeats):
    from handx_jax.data import pipeline
    ds = pipeline.make_dataset(data_dir, "train", batch_size=batch_size, seq_len=seq_len,
                               representation=representation, seed=0, shard_index=0,
                               shard_count=1, worker_count=workers, read_threads=threads)
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    elapsed = cpu = float("inf")
    for _ in range(repeats):  # best of `repeats`: the cores are shared with other jobs
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(batches):
            batch = next(it)
        elapsed = min(elapsed, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu_start)
    assert batch["motion"].shape == (batch_size, seq_len,
                                     pipeline.representations.FEATURE_DIMS[representation])
    # CPU time of this process only: meaningful when all work is in-process (workers 0).
    cpu_rate = batches * batch_size / cpu if workers == 0 and cpu > 0 else float("nan")
    return batches * batch_size / elapsed, cpu_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--clips", type=int, default=8192)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seq_len", type=int, default=60)
    parser.add_argument("--representation", default="joint_pos_w_scalar_rot")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--workers", default="0,2", help="comma list of grain worker counts")
    parser.add_argument("--threads", default="0,2", help="comma list of read thread counts")
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or tmp
        if args.data_dir is None:
            write_clips(data_dir, args.clips, args.seq_len)
        from handx_jax.data import pipeline
        pipeline.make_dataset(data_dir, "train", batch_size=args.batch_size,
                              representation=args.representation, shard_index=0,
                              shard_count=1)  # build TFDS, cache and stats (not timed)
        rows = []
        for workers in (int(w) for w in args.workers.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                rate, cpu_rate = run(data_dir, args.batch_size, args.seq_len, args.representation,
                           workers, threads, args.batches, args.warmup, args.repeats)
                rows.append((workers, threads, rate, cpu_rate))
    print(f"\npipeline throughput: batch {args.batch_size}, {args.seq_len} frames, "
          f"{args.representation}, {os.cpu_count()} cpus visible, best of {args.repeats} runs "
          f"of {args.batches} batches, target {TARGET:.0f}/s")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"{'workers':>8} {'threads':>8} {'samples/s':>12} {'per cpu-s':>10} {'target':>8}")
    for workers, threads, rate, cpu_rate in rows:
        print(f"{workers:>8} {threads:>8} {rate:>12.0f} {cpu_rate:>10.0f} "
              f"{'ok' if rate >= TARGET else 'BELOW':>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
