"""Evaluation metrics: HumanML3D and HandX protocols, HandX contacts, physics.

Embedding metrics take (N, D) arrays of evaluator latents; motion metrics take joint
positions (N, T, 2, 21, 3) in metres at 30 fps. Everything is vectorised numpy in float64
(inputs may be numpy or JAX arrays) and returns Python floats, numpy arrays or dicts of
floats. The driver (`handx_jax.eval.driver`) repeats the random parts over replications.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from handx_jax.hand import descriptors, geometry, skeleton

INTRA_CONTACT_M = descriptors.INTRA_CONTACT_M  # thumb tip vs another tip of the same hand
INTER_CONTACT_M = descriptors.INTER_CONTACT_M  # fingertip vs the closest other-palm point
JOINT_RADIUS_M = 0.008  # sphere radius per joint for the penetration proxy
# Limits (radians) on the HandX flexion angles (positive = bent towards the palm) of the
# 15 finger joints per hand: beyond 45 degrees of hyperextension (the passive limit of the
# MCP joints) or 120 degrees of flexion no human finger joint goes.
JOINT_LIMITS_RAD = (np.deg2rad(-45.0), np.deg2rad(120.0))


def _f64(x, name: str, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _pair(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _f64(a, name_a, 2), _f64(b, name_b, 2)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {a.shape} and {name_b} {b.shape} must have the same shape")
    return a, b


def _motion(x, name: str) -> np.ndarray:
    arr = _f64(x, name, 5)
    if arr.shape[2:] != (skeleton.NUM_HANDS, skeleton.NUM_JOINTS, 3):
        raise ValueError(f"{name}: expected (N, T, 2, 21, 3), got {arr.shape}")
    return arr


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (..., N, M) between rows of a (..., N, D) and b (..., M, D)."""
    sq = (np.sum(a * a, -1)[..., :, None] + np.sum(b * b, -1)[..., None, :]
          - 2.0 * np.einsum("...nd,...md->...nm", a, b))
    return np.sqrt(np.maximum(sq, 0.0))


# ----------------------------------------------------------------- embedding metrics --


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a table's retrieval and contact numbers are computed, so tables say which."""

    name: str
    r_precision_batch: int  # (text, motion) pairs per R-precision batch
    ties: str  # "sort": a tie ranks by sort order (reference code); "against": counts against
    whole_batch_when_short: bool  # fewer pairs than a batch: one batch of all (HandX) or error
    empty_prf: float  # precision / recall when its denominator is empty


PROTOCOLS = {
    # HandX's evaluation code: batches of 64, np.argsort ranks (ties by sort order), fewer
    # pairs than a batch evaluated as one batch, tp / (tp + fp + eps) = 0 when empty.
    "handx": Protocol("handx", 64, "sort", True, 0.0),
    # The HumanML3D reference code: batches of 32, np.argsort ranks, remainder dropped; the
    # contact metrics (not part of HumanML3D) keep "nothing to get wrong" = 1 when empty.
    "humanml3d": Protocol("humanml3d", 32, "sort", False, 1.0),
}
DEFAULT_PROTOCOL = "handx"


def get_protocol(name: str | Protocol) -> Protocol:
    """A `Protocol` by name ("handx", "humanml3d")."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def r_precision(text_emb, motion_emb, top_k: int = 3, batch_size: int = 32,
                ties: str = "sort", whole_batch_when_short: bool = False) -> np.ndarray:
    """Top-1..top-k retrieval rates (top_k,): pairs in batches of `batch_size`, remainder dropped.

    Within a batch, row i of the text-by-motion Euclidean distance matrix is a hit at k when
    motion i is among its k nearest. `ties`: "sort" ranks motions in np.argsort's order of the
    row (what the reference codes do); "against" counts a motion at exactly the true
    motion's distance as closer (collapsed generations cannot score by tie-breaking).
    `whole_batch_when_short`: fewer pairs than one batch form one batch (HandX's code)
    instead of an error.
    """
    text, motion = _pair(text_emb, motion_emb, "text_emb", "motion_emb")
    if ties not in ("sort", "against"):
        raise ValueError(f"r_precision: ties must be 'sort' or 'against', got {ties!r}")
    if text.shape[0] < batch_size and whole_batch_when_short and text.shape[0] > 0:
        batch_size = text.shape[0]
    num_batches = text.shape[0] // batch_size
    if num_batches == 0:
        raise ValueError(f"r_precision: {text.shape[0]} pairs are fewer than one batch of {batch_size}")
    n = num_batches * batch_size
    t = text[:n].reshape(num_batches, batch_size, -1)
    m = motion[:n].reshape(num_batches, batch_size, -1)
    dist = pairwise_distances(t, m)  # (nb, bs, bs)
    if ties == "sort":
        order = np.argsort(dist, axis=-1)
        rank = np.argmax(order == np.arange(batch_size)[None, :, None], axis=-1)
    else:
        own = np.diagonal(dist, axis1=1, axis2=2)[..., None]
        rank = np.sum(dist <= own, axis=-1) - 1  # other motions at least as close
    ks = np.arange(1, top_k + 1)
    return np.mean(rank.reshape(-1)[:, None] < ks[None, :], axis=0)


def matching_distance(text_emb, motion_emb) -> float:
    """MM-Dist: mean Euclidean distance between each text and its own motion."""
    text, motion = _pair(text_emb, motion_emb, "text_emb", "motion_emb")
    return float(np.mean(np.linalg.norm(text - motion, axis=-1)))


def _sqrtm_psd(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh(0.5 * (mat + mat.T))
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) for two Gaussians.

    tr((S1 S2)^1/2) equals the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S1^1/2 S2 S1^1/2, which eigh computes stably (no complex parts, no
    singular-matrix blow-ups as with a general matrix square root).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    trace_root = np.sum(np.sqrt(np.maximum(eig, 0.0)))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root
    return float(max(value, 0.0))


def gaussian_stats(emb) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and sample covariance (D, D) of embeddings (N, D)."""
    arr = _f64(emb, "emb", 2)
    if arr.shape[0] < 2:
        raise ValueError(f"gaussian_stats: need at least 2 embeddings, got {arr.shape[0]}")
    return arr.mean(axis=0), np.cov(arr, rowvar=False)


def fid(real_emb, gen_emb) -> float:
    """Frechet distance between Gaussians fitted to real and generated embeddings."""
    real, gen = _f64(real_emb, "real_emb", 2), _f64(gen_emb, "gen_emb", 2)
    if real.shape[1] != gen.shape[1]:
        raise ValueError(f"fid: real dim {real.shape[1]} != generated dim {gen.shape[1]}")
    mu1, s1 = gaussian_stats(real)
    mu2, s2 = gaussian_stats(gen)
    return frechet_distance(mu1, s1, mu2, s2)


def diversity(emb, num_pairs: int = 300, seed: int = 0) -> float:
    """Mean distance over `num_pairs` random pairs (two draws without replacement)."""
    arr = _f64(emb, "emb", 2)
    if arr.shape[0] < num_pairs:
        raise ValueError(f"diversity: {arr.shape[0]} embeddings are fewer than num_pairs={num_pairs}")
    rng = np.random.default_rng(seed)
    first = rng.choice(arr.shape[0], num_pairs, replace=False)
    second = rng.choice(arr.shape[0], num_pairs, replace=False)
    return float(np.mean(np.linalg.norm(arr[first] - arr[second], axis=-1)))


def multimodality(emb_per_text, num_pairs: int = 10, seed: int = 0) -> float:
    """Mean distance between generations for the same text: (texts, generations, dim) in.

    The same `num_pairs` random index pairs (drawn without replacement) serve every text,
    as in the HumanML3D evaluation code.
    """
    arr = _f64(emb_per_text, "emb_per_text", 3)
    gens = arr.shape[1]
    if gens < num_pairs:
        raise ValueError(f"multimodality: {gens} generations per text are fewer than num_pairs={num_pairs}")
    rng = np.random.default_rng(seed)
    first = rng.choice(gens, num_pairs, replace=False)
    second = rng.choice(gens, num_pairs, replace=False)
    return float(np.mean(np.linalg.norm(arr[:, first] - arr[:, second], axis=-1)))


# ------------------------------------------------------------------- contact metrics --

def intra_contact_labels(motion) -> np.ndarray:
    """(N, 2, 4) booleans: thumb tip closer than 2 cm to each other tip of its hand at any frame."""
    m = _motion(motion, "motion")
    return np.any(geometry.intra_tip_distances(m) < INTRA_CONTACT_M, axis=1)


def contact_frames(motion, kind: str) -> np.ndarray:
    """Per-frame contact states (N, T, pairs) under the same thresholds as the per-clip labels
    (`contact_labels` is their any over frames): 'intra' 8 pairs, 'inter' 10."""
    m = _motion(motion, "motion")
    if kind == "intra":
        frames = geometry.intra_tip_distances(m) < INTRA_CONTACT_M
    elif kind == "inter":
        frames = geometry.tip_to_other_palm(m, nearest=1) < INTER_CONTACT_M
    else:
        raise ValueError(f"contact kind must be 'intra' or 'inter', got {kind!r}")
    return frames.reshape(m.shape[0], m.shape[1], -1)


def frame_contact_prf(pred_motion, gt_motion, kind: str, empty: float = 1.0) -> dict:
    """Per-frame contact precision/recall/F1: one label per (clip, frame, pair), generated vs
    ground truth paired by index and frame, pooled (stricter than HandX's per-clip label:
    a contact must happen when the data has it)."""
    pred, true = contact_frames(pred_motion, kind), contact_frames(gt_motion, kind)
    if pred.shape != true.shape:
        raise ValueError(f"frame_contact_prf: generated {pred.shape} vs ground truth {true.shape} contact frames")
    return prf_from_labels(pred, true, empty)


def contact_timing_error(pred_motion, gt_motion, kind: str) -> dict:
    """Contact timing error in frames over the (clip, pair)s in contact in both clips: the
    mean of |onset difference| and |offset difference| (first and last contact frame),
    averaged over those pairs. `error` is NaN when no pair is in contact in both;
    `pairs` counts them."""
    return timing_error_of_frames(contact_frames(pred_motion, kind), contact_frames(gt_motion, kind))


def timing_error_of_frames(pred: np.ndarray, true: np.ndarray) -> dict:
    """`contact_timing_error` of per-frame contact states (N, T, pairs) already computed."""
    if pred.shape != true.shape:
        raise ValueError(f"contact_timing_error: generated {pred.shape} vs ground truth {true.shape} contact frames")
    t = pred.shape[1]
    both = pred.any(axis=1) & true.any(axis=1)  # (N, pairs)

    def onset_offset(frames):
        first = np.argmax(frames, axis=1)
        last = t - 1 - np.argmax(frames[:, ::-1], axis=1)
        return first, last

    (pf, pl), (tf, tl) = onset_offset(pred), onset_offset(true)
    err = 0.5 * (np.abs(pf - tf) + np.abs(pl - tl))
    count = int(both.sum())
    return {"error": float(err[both].mean()) if count else float("nan"), "pairs": count}


def tip_to_palm_distances(motion) -> np.ndarray:
    """(N, T, 2, 5): each fingertip of hand h to the closest point of the other hand's palm
    (HandX's evaluation; its annotation feature averages the 5 nearest points instead)."""
    return geometry.tip_to_other_palm(_motion(motion, "motion"), nearest=1)


def inter_contact_labels(motion) -> np.ndarray:
    """(N, 2, 5) booleans: fingertip closer than 2.5 cm to the other hand's palm at any frame."""
    return np.any(tip_to_palm_distances(motion) < INTER_CONTACT_M, axis=1)


def contact_labels(motion, kind: str) -> np.ndarray:
    """Per-clip binary contact labels (N, pairs) for kind 'intra' (8 pairs) or 'inter' (10)."""
    return contact_frames(motion, kind).any(axis=1)


def prf_from_labels(pred: np.ndarray, true: np.ndarray, empty: float = 1.0) -> dict:
    """Pooled precision, recall and F1 of boolean label arrays.

    Empty denominators: with `empty` = 1 (the humanml3d protocol) they follow "nothing to
    get wrong": precision is 1 when nothing is predicted and nothing was missed, recall is
    1 when there was nothing to find and nothing was falsely claimed, otherwise 0; with
    `empty` = 0 (HandX's evaluation code) they are 0.
    """
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    tp = int(np.sum(pred & true))
    fp = int(np.sum(pred & ~true))
    fn = int(np.sum(~pred & true))
    precision = tp / (tp + fp) if tp + fp else float(fn == 0) * empty
    recall = tp / (tp + fn) if tp + fn else float(fp == 0) * empty
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "tp": tp, "fp": fp, "fn": fn}


def contact_prf(pred_motion, gt_motion, kind: str, empty: float = 1.0) -> dict:
    """HandX contact precision/recall/F1 of generated vs ground-truth clips (paired by index).

    One binary label per (pair, clip): "contact anywhere in the clip"; TP/FP/FN pooled over
    all clips and pairs. kind 'intra': thumb tip vs each other tip of the same hand, < 2 cm;
    'inter': each fingertip vs the closest point of the other hand's palm, < 2.5 cm.
    """
    pred = contact_labels(pred_motion, kind)
    true = contact_labels(gt_motion, kind)
    if pred.shape[0] != true.shape[0]:
        raise ValueError(f"contact_prf: {pred.shape[0]} generated clips vs {true.shape[0]} ground-truth clips")
    return prf_from_labels(pred, true, empty)


# ------------------------------------------------------------------ physical metrics --


def penetration_depth(motion, radius: float = JOINT_RADIUS_M) -> float:
    """Inter-hand penetration proxy (metres): joints are spheres of `radius`; per frame the
    deepest overlap max(0, 2 r - d) over all left-right joint pairs, averaged over frames
    and clips."""
    m = _motion(motion, "motion")
    d = np.linalg.norm(m[:, :, 0, :, None, :] - m[:, :, 1, None, :, :], axis=-1)  # (N, T, 21, 21)
    overlap = np.maximum(2.0 * radius - d.min(axis=(-2, -1)), 0.0)
    return float(overlap.mean())


def jitter(motion, fps: float = skeleton.FPS) -> float:
    """Mean jerk magnitude (m/s^3): third finite difference in time x fps^3, over all joints."""
    m = _motion(motion, "motion")
    if m.shape[1] < 4:
        raise ValueError(f"jitter: needs at least 4 frames, got {m.shape[1]}")
    jerk = np.diff(m, n=3, axis=1) * float(fps) ** 3
    return float(np.mean(np.linalg.norm(jerk, axis=-1)))


def bone_lengths(motion) -> np.ndarray:
    """(N, T, 2, 20) bone lengths."""
    return geometry.bone_lengths(_motion(motion, "motion"))


def bone_length_deviation(motion, reference=None) -> float:
    """Mean absolute deviation (metres) of bone lengths from each clip's own mean length per
    bone (a rigid skeleton gives 0); with `reference` (2, 20) lengths, from those instead."""
    lengths = bone_lengths(motion)
    target = lengths.mean(axis=1, keepdims=True) if reference is None else np.asarray(reference, np.float64)
    return float(np.mean(np.abs(lengths - target)))


def joint_limit_violation_rate(motion, limits: tuple[float, float] = JOINT_LIMITS_RAD) -> float:
    """Fraction of finger joint angles (5 fingers x 3 joints per hand per frame) outside
    `limits` (radians), measured as HandX's flexion angles (`geometry.flexion_angles`)."""
    m = _motion(motion, "motion")
    angles = geometry.flexion_angles(m)
    return float(np.mean((angles < limits[0]) | (angles > limits[1])))


def mpjpe(pred_motion, gt_motion) -> float:
    """Mean per-joint position error (metres) between paired clips of equal shape."""
    pred, gt = _motion(pred_motion, "pred_motion"), _motion(gt_motion, "gt_motion")
    if pred.shape != gt.shape:
        raise ValueError(f"mpjpe: shapes differ, {pred.shape} vs {gt.shape}")
    return float(np.mean(np.linalg.norm(pred - gt, axis=-1)))
