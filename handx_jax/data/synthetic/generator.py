"""Batched clip generation: programs -> keyframes -> tracks -> forward kinematics -> clips.

Clips are made in fixed chunks of CHUNK consecutive indices; a clip's program and noise
come from its own seed (seed, split, index), and every array operation is per-clip, so the
output does not depend on how chunks are spread over worker processes.
"""

from __future__ import annotations

import json

import numpy as np

from handx_jax.data.synthetic import captions, poses, tracks
from handx_jax.data.synthetic.layout import layout
from handx_jax.data.synthetic.program import ORIENTATIONS, sample_program
from handx_jax.hand import geometry, kinematics

CHUNK = 128
SPLIT_IDS = {"train": 0, "test": 1}
QUALITY = {  # angle jitter (deg), wrist jitter (m), dropped-frame rate, caption-noise rate
    "high": (0.0, 0.0, 0.0, 0.0),
    "medium": (0.8, 0.0015, 0.02, 0.05),
    "low": (2.0, 0.004, 0.06, 0.2),
}
GT_KEYS = ("flexion", "abduction", "joint_angles", "spacing", "intra_contact", "inter_contact",
           "inter_tip_contact", "palm_contact", "wrist", "dropped", "scale")


def clip_name(split: str, index: int) -> str:
    return f"synth_{split}_{index:07d}"


def clip_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """Independent random stream per clip: the program (stream 0) and the noise (stream 1)."""
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index), stream])


def _rotations(program_orients: list[list[str]], wrist_rot: np.ndarray) -> np.ndarray:
    """World rotations (N, T, 2, 3, 3): orientation of the clip times the wrist offsets."""
    names = sorted(ORIENTATIONS)
    base = np.stack([ORIENTATIONS[n] for n in names])
    idx = np.array([[names.index(o) for o in orient] for orient in program_orients])
    base = base[idx][:, None]  # (N, 1, 2, 3, 3)
    return base @ kinematics.rotation_matrix(wrist_rot)


def _apply(rot: np.ndarray, origin: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Express points (N, ..., 3) in frames (rot (N, 3, 3), origin (N, 3))."""
    shape = pts.shape
    flat = pts.reshape(shape[0], -1, 3) - origin[:, None, :]
    return np.matmul(flat, rot.transpose(0, 2, 1)).reshape(shape)


def _intervals_to_mask(n: int, frames: int, items, shape, index_fn) -> np.ndarray:
    mask = np.zeros((n, frames) + shape, dtype=bool)
    for i, clip_items in enumerate(items):
        for item in clip_items:
            idx, t0, t1 = index_fn(item)
            mask[(i, slice(int(t0), int(t1) + 1)) + idx] = True
    return mask


def generate_chunk(seed: int, split: str, indices, frames: int = 60,
                   quality: str = "high") -> dict:
    """Generate clips `indices` of a split: names, motion, captions, ground truth."""
    if quality not in QUALITY:
        raise ValueError(f"quality must be one of {sorted(QUALITY)}, got {quality!r}")
    if frames < 30:
        raise ValueError(f"frames must be >= 30 for the choreography, got {frames}")
    indices = list(indices)
    n = len(indices)
    programs, lays = [], []
    for index in indices:
        program = sample_program(clip_rng(seed, split, index), frames)
        programs.append(program)
        lays.append(layout(program))

    # ---- tracks: (N*2 hands) keyframe lists -> per-frame values
    ft, fv = tracks.pad_keys([lay.fingers[h].keys for lay in lays for h in range(2)])
    wt, wv = tracks.pad_keys([lay.wrists[h].keys for lay in lays for h in range(2)])
    finger = tracks.evaluate(ft, fv, frames).reshape(n, 2, frames, 20).transpose(0, 2, 1, 3)
    wrist = tracks.evaluate(wt, wv, frames).reshape(n, 2, frames, 6).transpose(0, 2, 1, 3)
    finger = poses.clip_pose(finger)

    angle_sd, pos_sd, drop_rate, caption_rate = QUALITY[quality]
    noisy_f, noisy_w = finger, wrist
    drop_idx = np.tile(np.arange(frames), (n, 1))
    if quality != "high":
        nf, nw = np.empty_like(finger), np.empty_like(wrist)
        for i, index in enumerate(indices):
            rng = clip_rng(seed, split, index, 1)
            nf[i] = finger[i] + np.deg2rad(angle_sd) * rng.standard_normal(finger[i].shape)
            nw[i] = wrist[i]
            nw[i, ..., :3] += pos_sd * rng.standard_normal(wrist[i, ..., :3].shape)
            drop_idx[i] = tracks.dropped_frame_index(rng, frames, drop_rate)
        noisy_f, noisy_w = poses.clip_pose(nf), nw

    scale = np.array([p["subject_scale"] for p in programs])
    orients = [p["orientation"] for p in programs]
    left = np.array([True, False])
    mirror = np.where(left[:, None], np.array([-1.0, 1.0, 1.0]), 1.0)  # (2, 3)

    def fk(local, wvec):
        """World joints from hand-frame joints: scale, rotate, translate, mirror the left."""
        rot = _rotations(orients, wvec[..., 3:])[..., None, :, :]
        world = kinematics._rotate(rot, local * scale[:, None, None, None, None])
        world = world + (wvec[..., :3] * mirror)[..., None, :]
        return world * mirror[:, None, :]

    flex, abd = poses.split(finger)
    local = kinematics.local_joints(flex, abd)
    clean = fk(local, wrist)  # (N, T, 2, 21, 3) world, float64
    if quality == "high":
        motion = clean
    else:
        motion = fk(kinematics.local_joints(*poses.split(noisy_f)), noisy_w)
    motion = np.take_along_axis(motion, drop_idx[:, :, None, None, None], axis=1)
    rot, origin = geometry.canonical_transform(motion)
    motion = _apply(rot, origin, motion)
    clean = _apply(rot, origin, clean)

    # ---- ground truth
    # the thumb as the annotation measures it (no dead zone), on the noise-free hand-frame
    # joints: 3-D angles and their sign do not change under the mirror and the rotations
    flexion = flex.copy()
    flexion[..., 0, :] = geometry.flexion_angles(local, dead_zone=False)[..., 0, :]
    gt = {
        "flexion": flexion.astype(np.float32),
        "abduction": abd.astype(np.float32),
        "joint_angles": noisy_f.astype(np.float32),
        "spacing": geometry.spacing_angles(clean).astype(np.float32),
        "intra_contact": _intervals_to_mask(n, frames, [l.intra for l in lays], (2, 4),
                                            lambda it: ((it[0], it[1] - 1), it[2], it[3])),
        "inter_contact": _intervals_to_mask(n, frames, [l.palm_touch for l in lays], (2, 5),
                                            lambda it: ((it[0], it[1]), it[2], it[3])),
        "inter_tip_contact": _intervals_to_mask(n, frames, [l.tip_tip for l in lays], (5, 5),
                                                lambda it: ((it[0], it[1]), it[2], it[3])),
        "palm_contact": _intervals_to_mask(n, frames, [l.palm_palm for l in lays], (),
                                           lambda it: ((), it[0], it[1])),
        "wrist": clean[..., 0, :].astype(np.float32),
        "dropped": drop_idx != np.arange(frames),
        "scale": scale.astype(np.float32),
    }
    names = [clip_name(split, i) for i in indices]
    anns, records = [], []
    for i, (name, program, lay) in enumerate(zip(names, programs, lays)):
        rng = clip_rng(seed, split, indices[i], 2)
        triplets = captions.clip_captions(program, lay, rng, caption_rate)
        anns.append(triplets)
        records.append(json.dumps({"clip": name, "program": program, "events": lay.events},
                                  sort_keys=True, separators=(",", ":")))
    return {"names": names, "motion": motion.astype(np.float32), "captions": anns,
            "ground_truth": gt, "records": records, "programs": programs}
