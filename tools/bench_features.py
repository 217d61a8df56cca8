"""Benchmark: motion-feature extraction (and events + rules captions) in clips per second.

Clips are 60 frames. By default they come from the synthetic generator when it is
available, else from a built-in random hand model; the clip source is printed. BLAS is
held to one thread per worker so `--workers 2` means two cores.

    python tools/bench_features.py --clips 4000 --workers 2

With `--src FILE`: CPU time per stage of `handx annotate --backend rules` on that clip file,
one core, every stage once over all clips (loading, the input check, each feature, the
features as annotation computes them, events, captions, writing both output formats):

    python tools/bench_features.py --src DIR/train.clips.npz
"""

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402


def synthetic_clips(count: int, seed: int):
    """Clips from the synthetic generator, or None when it is not importable."""
    try:
        from handx_jax.data.synthetic import generator
    except ImportError:
        return None
    try:
        out = generator.generate_chunk(seed, "train", range(min(count, 512)), frames=60)
    except Exception as err:  # the generator's API is another stage's; fall back loudly
        print(f"synthetic generator unusable ({err}); using the built-in hand model")
        return None
    motion = np.asarray(out["motion"], np.float32)
    reps = -(-count // motion.shape[0])
    return np.concatenate([motion] * reps)[:count]


def random_hands(count: int, seed: int) -> np.ndarray:
    """Plausible two-hand clips: a rigid template hand per side, drifting and bending."""
    rng = np.random.default_rng(seed)
    template = np.array([[0, 0, 0], [-.025, .09, 0], [-.025, .13, 0], [-.025, .155, 0],
                         [0, .095, 0], [0, .14, 0], [0, .168, 0], [.038, .08, 0],
                         [.038, .112, 0], [.038, .132, 0], [.02, .09, 0], [.02, .132, 0],
                         [.02, .158, 0], [-.025, .025, -.01], [-.05, .06, -.01],
                         [-.07, .085, -.01], [-.085, .105, -.01], [-.025, .177, 0],
                         [0, .192, 0], [.02, .18, 0], [.038, .15, 0]], np.float32)
    frames = 60
    motion = np.empty((count, frames, 2, 21, 3), np.float32)
    t = np.linspace(0, 1, frames, dtype=np.float32)[None, :, None, None, None]
    for h, sign in enumerate((-1.0, 1.0)):
        hand = template * np.array([sign, 1, 1], np.float32)
        start = rng.uniform(-0.05, 0.05, size=(count, 1, 1, 3)).astype(np.float32)
        start[..., 0] += sign * 0.15
        drift = rng.uniform(-0.08, 0.08, size=(count, 1, 1, 3)).astype(np.float32)
        wobble = 0.01 * np.sin(t * rng.uniform(2, 12, size=(count, 1, 1, 21, 1)) * np.pi)
        motion[:, :, h] = hand + start + drift[:, None] * t[..., 0, :, :] + wobble[..., 0, :]
    return motion


def stage_profile(src: str, out_dir: str | None = None) -> None:
    """Print the CPU seconds and ms per clip of every annotation stage on the clips of `src`."""
    import inspect
    import tempfile

    from handx_jax.annotate import events, features, pipeline, reasoner_rules
    from handx_jax.data import handx_format, store, validate
    from handx_jax.hand import geometry as G

    rows = []

    def stage(name, fn):
        start = time.process_time()
        result = fn()
        rows.append((name, time.process_time() - start))
        return result

    clips = stage("load", lambda: store.load_any(src))
    stage("input check", lambda: validate.refuse_bad_motion(clips, src))
    names = [n for batch in pipeline._batches(clips, 256, src) for n in batch]
    motion = pipeline._motion(clips, names)
    n = len(names)
    parts = {"flexion": lambda m: G.flexion_angles(m),
             "spacing": lambda m: G.spacing_angles(m),
             "fingertip distances": lambda m: (G.intra_tip_distances(m),
                                               G.inter_tip_distances(m)),
             "fingertip-palm (every tip)": lambda m: G.tip_to_other_palm(m),
             "palm-palm (every clip)": lambda m: G.palm_palm_distance(
                 m[..., G.PALM_CORNERS, :][..., 0, :, :], m[..., G.PALM_CORNERS, :][..., 1, :, :])}
    for name, fn in parts.items():
        stage("  " + name, lambda: [fn(motion[lo:lo + 64]) for lo in range(0, n, 64)])
    stage("features, all measured", lambda: features.extract_features(motion))
    pruned = "exact" in inspect.signature(features.extract_features).parameters
    batches = range(0, n, 256)
    feats = stage("features for annotation" + ("" if pruned else " (all measured)"),
                  lambda: [features.extract_features(motion[lo:lo + 256],
                                                     **({"exact": False} if pruned else {}))
                           for lo in batches])
    docs = stage("events", lambda: [d for f in feats for d in events.batch_events(f)])
    captions = stage("rules captions", lambda: [reasoner_rules.describe(d, seed=0, name=c)
                                                for d, c in zip(docs, names)])
    annotated = {}
    for name, triplets in zip(names, captions):
        annotated[name] = dict(clips[name], left_annotation=[t["left"] for t in triplets],
                               right_annotation=[t["right"] for t in triplets],
                               interaction_annotation=[t["two_hands_relation"]
                                                       for t in triplets])
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        stage("write HandX format", lambda: handx_format.save_handx(
            os.path.join(tmp, "out.npz"), annotated))
        stage("write .clips.npz", lambda: store.save_clips(
            os.path.join(tmp, "out.clips.npz"), annotated))
    print(f"{n} clips from {src}; CPU time per stage on one core (BLAS one thread)")
    print(f"{'stage':<40}{'CPU s':>8}{'ms/clip':>9}")
    for name, seconds in rows:
        print(f"{name:<40}{seconds:>8.2f}{1000 * seconds / n:>9.3f}")
    total = sum(s for name, s in rows if not name.startswith(("  ", "features, all")))
    print(f"{'annotation stages together':<40}{total:>8.2f}{1000 * total / n:>9.3f}")
    try:
        print("load average: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--events-clips", type=int, default=500)
    parser.add_argument("--source", choices=("auto", "synthetic", "random"), default="auto")
    parser.add_argument("--src", default=None,
                        help="clip file: print the per-stage CPU profile of the annotation")
    args = parser.parse_args()
    if args.src:
        stage_profile(args.src)
        return

    from handx_jax.annotate import events, features, reasoner_rules

    motion = None if args.source == "random" else synthetic_clips(args.clips, 0)
    source = "synthetic generator"
    if motion is None:
        if args.source == "synthetic":
            raise SystemExit("synthetic generator not available")
        motion, source = random_hands(args.clips, 0), "built-in random hands"
    features.extract_features(motion[:64])  # warm-up
    rows = []
    for workers in args.workers:
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            start, cpu = time.perf_counter(), time.process_time()
            feats = features.extract_features(motion, chunk=args.chunk, workers=workers)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        rows.append((f"features, {workers} worker(s)", len(motion) / best, best,
                     len(motion) / best_cpu))
    sub = {k: v[: args.events_clips] for k, v in feats.items()}
    start = time.perf_counter()
    docs = events.batch_events(sub)
    elapsed = time.perf_counter() - start
    rows.append(("events (1 core)", len(docs) / elapsed, elapsed, None))
    start = time.perf_counter()
    for i, doc in enumerate(docs):
        reasoner_rules.describe(doc, seed=0, name=str(i))
    elapsed = time.perf_counter() - start
    rows.append(("rules captions (1 core)", len(docs) / elapsed, elapsed, None))
    print(f"clips: {len(motion)} x 60 frames from {source}; os.cpu_count()={os.cpu_count()}")
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    print(f"load average at the end: {load} (other work on the machine slows wall time)")
    print(f"{'stage':<28}{'clips/s':>10}{'seconds':>9}{'clips/CPU-s':>13}")
    for name, rate, seconds, per_cpu in rows:
        cpu = f"{per_cpu:>13.0f}" if per_cpu else f"{'-':>13}"
        print(f"{name:<28}{rate:>10.0f}{seconds:>9.2f}{cpu}")
    single = [r for r in rows if r[0].startswith("features, 1 ")]
    if single and single[0][3]:
        print(f"2 x the single-worker CPU-time rate (what 2 idle cores would give if the two "
              f"workers scale): {2 * single[0][3]:.0f} clips/s")
    print("target: features >= 1000 clips/s on 2 cores (wall time, workers=2)")


if __name__ == "__main__":
    main()
