"""Validation of clip collections: every problem names its file, clip and field.

Checks: empty file, missing keys, motion shape (T, 2, 21, 3), non-numeric motion, NaN/Inf,
implausible scale (millimetres or centimetres instead of metres, collapsed skeletons),
annotation lists that are not lists of str, empty, holding empty captions, or of unequal
length across the three fields. Damaged files (bad CRC, truncated, bad meta JSON or UTF-8,
missing members, object arrays, duplicate clip names) are one problem naming the file.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from handx_jax.data import handx_format, store
from handx_jax.data.handx_format import ANNOTATION_KEYS, MOTION_KEY
from handx_jax.hand import skeleton

# Plausible median bone length in metres: human hand bones are ~1-6 cm. Data in
# centimetres or millimetres gives 1-60, collapsed or all-zero skeletons give ~0.
MIN_MEDIAN_BONE_M = 1e-3
MAX_MEDIAN_BONE_M = 0.3
# Plausible spatial extent: no joint more than this far from the clip's wrist midpoint.
MAX_EXTENT_M = 5.0

_PARENT = np.array([p for p, _ in skeleton.BONES])
_CHILD = np.array([c for _, c in skeleton.BONES])


@dataclasses.dataclass(frozen=True)
class Problem:
    """One validation finding."""

    file: str
    clip: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.clip is not None:
            where += f": clip {self.clip!r}"
        if self.field is not None:
            where += f": {self.field}"
        return f"{where}: {self.message}"


def _check_motion(motion, source: str, name: str) -> list[Problem]:
    def problem(message):
        return [Problem(source, name, MOTION_KEY, message)]

    if not isinstance(motion, np.ndarray):
        return problem(f"is {type(motion).__name__}, expected an array")
    if motion.dtype.kind not in "fiu":
        return problem(f"dtype {motion.dtype} is not numeric")
    if motion.ndim != 4 or motion.shape[1:] != (2, 21, 3):
        return problem(f"shape {motion.shape}, expected (T, 2, 21, 3)")
    if motion.shape[0] == 0:
        return problem("has no frames")
    finite = np.isfinite(motion)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        n_nan = int(np.isnan(motion).sum())
        return problem(f"{int((~finite).sum())} non-finite values ({n_nan} NaN), first at "
                       f"frame {bad[0]}, hand {bad[1]}, joint {bad[2]}")
    bones = np.linalg.norm(motion[:, :, _CHILD] - motion[:, :, _PARENT], axis=-1)
    median_bone = float(np.median(bones))
    if not MIN_MEDIAN_BONE_M <= median_bone <= MAX_MEDIAN_BONE_M:
        return problem(
            f"implausible scale: median bone length {median_bone:.4g}, expected metres "
            f"({MIN_MEDIAN_BONE_M}..{MAX_MEDIAN_BONE_M}); millimetres or centimetres?")
    centre = 0.5 * (motion[:, 0, 0] + motion[:, 1, 0]).mean(axis=0)
    extent = float(np.abs(motion - centre).max())
    if extent > MAX_EXTENT_M:
        return problem(f"implausible scale: a joint lies {extent:.4g} m from the wrist midpoint "
                       f"(limit {MAX_EXTENT_M} m)")
    return []


def _check_annotations(clip: dict, source: str, name: str) -> list[Problem]:
    problems, lengths = [], {}
    for field in ANNOTATION_KEYS:
        value = clip.get(field)
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
            problems.append(Problem(source, name, field, "is not a list of str"))
            continue
        if not value:
            problems.append(Problem(source, name, field, "is empty"))
        blank = [i for i, s in enumerate(value) if not s.strip()]
        if blank:
            problems.append(Problem(source, name, field,
                                    f"{len(blank)} empty caption(s), first at index {blank[0]}"))
        lengths[field] = len(value)
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        problems.append(Problem(source, name, "annotations", f"unequal lengths: {detail}"))
    return problems


def validate_clips(clips: dict[str, dict], source: str) -> list[Problem]:
    """All problems in `clips` (read from `source`); an empty list means valid."""
    source = os.fspath(source)
    if not clips:
        return [Problem(source, None, None, "holds no clips (empty file)")]
    problems: list[Problem] = []
    for name, clip in clips.items():
        if not isinstance(clip, dict):
            problems.append(Problem(source, name, None,
                                    f"is {type(clip).__name__}, expected a dict"))
            continue
        missing = [k for k in (MOTION_KEY, *ANNOTATION_KEYS) if k not in clip]
        for key in missing:
            problems.append(Problem(source, name, key, "missing key"))
        if MOTION_KEY in clip:
            problems.extend(_check_motion(clip[MOTION_KEY], source, name))
        problems.extend(_check_annotations(clip, source, name))
    return problems


def motion_problems(clips: dict[str, dict], source: str) -> list[Problem]:
    """Motion problems only (shape, non-finite values, scale): the check every consumer of
    motion (annotation, training data) shares with `validate_clips`."""
    source = os.fspath(source)
    return [p for name, clip in clips.items() if isinstance(clip, dict) and MOTION_KEY in clip
            for p in _check_motion(clip[MOTION_KEY], source, name)]


def refuse_bad_motion(clips: dict[str, dict], source: str) -> None:
    """Raise ValueError naming the file, the first bad clip and the count."""
    problems = motion_problems(clips, source)
    if problems:
        more = f" (and {len(problems) - 1} more clips; `handx data validate` lists them)" \
            if len(problems) > 1 else ""
        raise ValueError(f"{problems[0]}{more}")


@dataclasses.dataclass
class Report:
    """What `handx data validate` prints for one file."""

    file: str
    clips: int = 0
    frames: int = 0
    annotations: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)


def _without(path: str, err: Exception) -> str:
    """The error's message without a leading copy of the file name."""
    text = str(err)
    return text[len(path) + 2:] if text.startswith(path + ": ") else text


def validate_file(path: str | os.PathLike) -> Report:
    """Load `path` (either format) and validate it; load failures become problems."""
    path = os.fspath(path)
    report = Report(path)
    try:
        clips = store.load_any(path, strict=False)
    except (handx_format.HandXFormatError, store.ClipStoreError, OSError) as err:
        report.problems.append(Problem(path, None, None, f"cannot load: {_without(path, err)}"))
        return report
    except Exception as err:  # any other damage is still reported, never a traceback
        report.problems.append(Problem(path, None, None,
                                       f"cannot load: {type(err).__name__}: {err}"))
        return report
    report.clips = len(clips)
    for clip in clips.values():
        motion = clip.get(MOTION_KEY) if isinstance(clip, dict) else None
        if isinstance(motion, np.ndarray) and motion.ndim >= 1:
            report.frames += int(motion.shape[0])
        if isinstance(clip, dict) and isinstance(clip.get(ANNOTATION_KEYS[0]), list):
            report.annotations += len(clip[ANNOTATION_KEYS[0]])
    report.problems = validate_clips(clips, path)
    return report
