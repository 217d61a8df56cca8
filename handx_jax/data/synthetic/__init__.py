"""Synthetic bimanual hand motion with ground truth: the embedded default dataset.

Every clip comes from a program sampled from a choreography grammar (program.py): per hand
finger actions (bend, straighten, clench n times, thumb taps a fingertip k times, spread and
close, hyperextend, hold a named pose: open, fist, point, pinch, thumbs-up, V) and wrist
actions (translate along x/y/z at slow/medium/fast speed, rotate, oscillate), plus one
two-hand relation (approach/separate, palms together, a fingertip touches the other palm,
corresponding fingertips tap, hands swap heights, stay far apart, mirror each other).
Actions sit in the clip's beginning/middle/end thirds and are joined by minimum-jerk
ramps. Poses are turned into joints by handx_jax.hand.kinematics (constant bone lengths,
subject scale 0.92-1.08, joint limits, DIP = 2/3 PIP). In-hand touches use poses solved by
the batched IK of handx_jax.hand.ik; touches between hands come from placing the wrist so
the fingertip (or palm) meets its target. Clips are canonicalised (handx_jax.hand.geometry),
metres, 30 fps, float32 (T, 2, 21, 3).

Files written by `write_dataset(out_dir, num_train, num_test)` for split in (train, test):

- `{split}_can_pos_all_wotextfeat.npz` HandX release format and `{split}.clips.npz` our
  pickle-free format; the same clips and captions (5 triplets: 2 concise, 2 moderate,
  1 detailed; written from the program, not from measured features).
- `{split}_ground_truth.jsonl`: one line per clip (same order as the clip files)
  `{"clip": name, "program": {...}, "events": {"left": [...], "right": [...],
  "two_hands": [...]}}`. Events carry `family`, `start`, `end` (inclusive frames) and
  either `start_des`/`end_des` (+ `speed`) or `constant_des`, and as needed `finger`,
  `fingers`, `axis`, `direction`, `repeat`, `distance`. Families: finger_flexing (per
  finger; states "fully extended", "partially bent", "fully bent", "hyperextended"),
  finger_spacing ("closed"/"open"), finger_tip_contact (in a hand: thumb + finger; between
  hands: the same finger of both), wrist_trajectory (axis, direction left/right,
  forward/backward, up/down or "back and forth", speed), finger_palm_distance (a
  fingertip on the other palm), palm_palm_distance ("contact", "near", "far"),
  palm_palm_relative_position (x: left hand on the left; z: swapping heights), and three
  extra ones: pose (held named pose), wrist_rotation, mirror.
- `{split}_ground_truth.npz`: `names` (N,) and per-frame arrays, clip order as above:
  - `flexion` (N,T,2,5,3) float32 radians, intended (noise-free) flexion; fingers thumb,
    index, middle, ring, pinky; joints MCP, PIP, DIP for fingers. These equal the HandX
    measure (bones projected on the hand-local x-z plane) exactly, before its 11-degree
    dead zone. Thumb: the HandX thumb measure of the clean skeleton (3-D bend at CMC, MCP
    (signed, positive across the palm), IP).
  - `abduction` (N,T,2,5) float32 radians, the kinematic abduction on top of the rest
    splay (positive towards the thumb; thumb: CMC abduction).
  - `joint_angles` (N,T,2,20) float32: the kinematic pose that drew the stored motion
    (15 flexion values as in kinematics.HandParams, then 5 abductions); with noise
    (quality medium/low) it includes the jitter.
  - `spacing` (N,T,2,3) float32 radians, angle between adjacent fingers' MCP->PIP vectors
    (index-middle, middle-ring, ring-pinky) of the clean skeleton.
  - `intra_contact` (N,T,2,4) bool: thumb tip intended on the index/middle/ring/pinky tip.
  - `inter_contact` (N,T,2,5) bool: fingertip f of hand h intended on the other palm.
  - `inter_tip_contact` (N,T,5,5) bool: left tip i intended on right tip j (fingertip
    taps; pressed palms also join the index..pinky tips).
  - `palm_contact` (N,T) bool: palms intended together.
  - `wrist` (N,T,2,3) float32 metres: clean wrist positions in the clip's canonical frame.
  - `dropped` (N,T) bool: frames replaced by the previous one (quality medium/low).
  - `scale` (N,) float32: the subject's bone-length scale.

Quality: `high` is clean; `medium` adds 0.8 deg joint jitter, 1.5 mm wrist jitter, 2 %
dropped frames and 5 % corrupted caption triplets; `low` 2 deg, 4 mm, 6 %, 20 %.
Determinism: a clip's program and noise depend only on (seed, split, index); clips are
built in fixed chunks, so files are byte-identical whatever the worker count.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from handx_jax import atomic

import numpy as np

from handx_jax.data.synthetic import poses
from handx_jax.data.synthetic.generator import (CHUNK, GT_KEYS, QUALITY, clip_name,  # noqa
                                                generate_chunk)

SPLITS = ("train", "test")


def _init_worker(library) -> None:
    poses.set_pinch_library(library)


def _run_chunk(job):
    seed, split, start, stop, frames, quality = job
    return generate_chunk(seed, split, range(start, stop), frames, quality)


def generate(num_clips: int, split: str = "train", *, frames: int = 60, seed: int = 0,
             quality: str = "high", workers: int = 1, progress: bool = False,
             chunk: int = CHUNK):
    """Yield generated chunks (dicts of generator.generate_chunk) in clip order.

    `chunk` only sets how many clips are built per batch; the clips do not depend on it.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_clips < 0:
        raise ValueError(f"number of clips must be >= 0, got {num_clips}")
    if quality not in QUALITY:
        raise ValueError(f"quality must be one of {sorted(QUALITY)}, got {quality!r}")
    jobs = [(seed, split, s, min(s + chunk, num_clips), frames, quality)
            for s in range(0, num_clips, chunk)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_clips, desc=f"synth {split}", unit="clip")
    library = poses.pinch_library()
    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker,
                      initargs=(library,)) as pool:
            for out in pool.imap(_run_chunk, jobs):
                if bar:
                    bar.update(len(out["names"]))
                yield out
    else:
        for job in jobs:
            out = _run_chunk(job)
            if bar:
                bar.update(len(out["names"]))
            yield out
    if bar:
        bar.close()


def _atomic_text(path: str, lines) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = atomic.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_split(out_dir: str, split: str, num_clips: int, *, frames: int = 60, seed: int = 0,
                quality: str = "high", workers: int = 1, progress: bool = False,
                chunk: int = CHUNK, timings: dict | None = None) -> dict:
    """Generate one split and write its four files; returns their paths.

    `timings`, when given, receives the seconds spent generating and writing.
    """
    import time

    from handx_jax.data import handx_format, store

    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    clips, records = {}, []
    gt_parts = {k: [] for k in GT_KEYS}
    for out in generate(num_clips, split, frames=frames, seed=seed, quality=quality,
                        workers=workers, progress=progress, chunk=chunk):
        for i, name in enumerate(out["names"]):
            clip = {"motion": out["motion"][i]}
            clip.update(out["captions"][i])
            clips[name] = clip
        records += out["records"]
        for k in GT_KEYS:
            gt_parts[k].append(out["ground_truth"][k])
    generated = time.perf_counter()
    paths = {
        "handx": os.path.join(out_dir, f"{split}_can_pos_all_wotextfeat.npz"),
        "clips": os.path.join(out_dir, f"{split}.clips.npz"),
        "ground_truth_jsonl": os.path.join(out_dir, f"{split}_ground_truth.jsonl"),
        "ground_truth_npz": os.path.join(out_dir, f"{split}_ground_truth.npz"),
    }
    handx_format.save_handx(paths["handx"], clips)
    store.save_clips(paths["clips"], clips)
    _atomic_text(paths["ground_truth_jsonl"], records)
    gt = {k: (np.concatenate(v) if v else np.zeros((0,), np.float32))
          for k, v in gt_parts.items()}
    gt["names"] = np.array(list(clips), dtype=str) if clips else np.zeros((0,), "<U1")
    handx_format.atomic_savez(paths["ground_truth_npz"], gt, allow_pickle=False)
    if timings is not None:
        timings["generate_s"] = timings.get("generate_s", 0.0) + generated - start
        timings["write_s"] = timings.get("write_s", 0.0) + time.perf_counter() - generated
    return paths


def write_dataset(out_dir: str | os.PathLike, num_train: int, num_test: int, *,
                  frames: int = 60, seed: int = 0, quality: str = "high", workers: int = 1,
                  progress: bool = False, chunk: int = CHUNK, test_quality: str | None = None) -> dict[str, str]:
    """Write the train and test splits (both formats plus ground truth) into `out_dir`.

    `test_quality` (default: `quality`) lets a degraded training split keep the clean test
    split: clips depend only on (seed, split, index), so `test_quality="high"` writes the
    very test clips of the clean dataset with the same seed.

    Returns `{"train_handx": path, "train_clips": ..., "train_ground_truth_jsonl": ...,
    "train_ground_truth_npz": ..., "test_...": ..., "manifest": ...}`; `manifest.json`
    (files, sizes, hashes, counts) is written last, so a directory without it is incomplete.
    """
    from handx_jax.data import manifest

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest.invalidate(out_dir)  # incomplete until the manifest is written, last
    paths = {}
    qualities = {"train": quality, "test": quality if test_quality is None else test_quality}
    for split, count in (("train", num_train), ("test", num_test)):
        for key, path in write_split(out_dir, split, count, frames=frames, seed=seed,
                                     quality=qualities[split], workers=workers,
                                     progress=progress, chunk=chunk).items():
            paths[f"{split}_{key}"] = path
    paths["manifest"] = manifest.write_manifest(
        out_dir, sorted(paths.values()), {"train": int(num_train), "test": int(num_test)},
        {"generator": "handx_jax.data.synthetic", "frames": int(frames), "seed": int(seed),
         "quality": quality, "test_quality": qualities["test"]})
    return paths
