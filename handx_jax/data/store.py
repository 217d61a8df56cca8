"""Our pickle-free clip format (`*.clips.npz`) and format dispatch.

Layout (plain `np.savez`, readable with `np.load(allow_pickle=False)`):

    format        str scalar "handx-clips-v1"
    names         (N,) unicode clip names, in file order
    offsets       (N+1,) int64; clip i is frames offsets[i]:offsets[i+1]
    motion        (sum T, 2, 21, 3) motion of all clips concatenated (dtype kept)
    meta_json     (bytes,) uint8: UTF-8 JSON {"annotations": {field: [per clip list|null]},
                  "extras": {field: [per clip JSON value|null]}, "frame_fields": [...]}
    frame/<field> (sum T, ...) other per-frame arrays (e.g. MANO `left_pose`), same offsets

Conversion to and from the HandX release format is lossless: names, order, motion
values and dtype, every caption, and per-frame extras survive both ways.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
import zipfile
from typing import Any

import numpy as np

from handx_jax.data import handx_format
from handx_jax.data.handx_format import ANNOTATION_KEYS, MOTION_KEY

FORMAT_TAG = "handx-clips-v1"
CLIPS_SUFFIX = ".clips.npz"
HANDX_SUFFIX = "_can_pos_all_wotextfeat.npz"


class ClipStoreError(ValueError):
    """A clip collection that cannot be written or read; names the file and clip."""


@dataclasses.dataclass
class ClipTable:
    """Columnar view of a clip file: what the pipeline and TFDS builder consume."""

    names: list[str]
    offsets: np.ndarray  # (N+1,) int64
    motion: np.ndarray  # (sum T, 2, 21, 3)
    annotations: dict[str, list]  # field -> per clip list of str (or None when absent)

    def __len__(self) -> int:
        return len(self.names)

    def clip_motion(self, i: int) -> np.ndarray:
        return self.motion[self.offsets[i]:self.offsets[i + 1]]


def _is_frame_array(value: Any, frames: int) -> bool:
    return isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == frames \
        and value.dtype.kind in "biuf"


def save_clips(path: str | os.PathLike, clips: dict[str, dict]) -> None:
    """Write clips to a pickle-free `.clips.npz` (atomic: temp name then rename)."""
    path = os.fspath(path)
    names = list(clips)
    motions, lengths = [], []
    for name in names:
        clip = clips[name]
        if MOTION_KEY not in clip:
            raise ClipStoreError(f"{path}: clip {name!r}: no 'motion' to store")
        motion = np.asarray(clip[MOTION_KEY])
        if motion.ndim < 1 or (motions and motion.shape[1:] != motions[0].shape[1:]):
            raise ClipStoreError(
                f"{path}: clip {name!r}: motion shape {motion.shape} does not match "
                f"{motions[0].shape if motions else '(T, ...)'}")
        motions.append(motion)
        lengths.append(motion.shape[0])
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if motions:
        dtype = np.result_type(*[m.dtype for m in motions])
        motion_all = np.concatenate([m.astype(dtype, copy=False) for m in motions], axis=0)
    else:
        motion_all = np.zeros((0, 2, 21, 3), dtype=np.float32)

    annotations = {f: [clips[n].get(f) for n in names] for f in ANNOTATION_KEYS}
    annotations = {f: [None if v is None else [str(s) for s in v] for v in values]
                   for f, values in annotations.items()}
    other = sorted({k for c in clips.values() for k in c} - {MOTION_KEY, *ANNOTATION_KEYS})
    frame_fields, extras = [], {}
    arrays: dict[str, Any] = {}
    for field in other:
        values = [clips[n].get(field) for n in names]
        if all(_is_frame_array(v, t) for v, t in zip(values, lengths)) and \
                len({v.shape[1:] for v in values}) == 1:
            frame_fields.append(field)
            arrays["frame/" + field] = np.concatenate(values, axis=0)
            continue
        encoded = []
        for name, value in zip(names, values):
            if isinstance(value, np.ndarray):
                value = value.tolist()
            try:
                json.dumps(value)
            except TypeError as err:
                raise ClipStoreError(
                    f"{path}: clip {name!r}: field {field!r} cannot be stored: {err}") from err
            encoded.append(value)
        extras[field] = encoded
    meta = {"annotations": annotations, "extras": extras, "frame_fields": frame_fields}
    meta_bytes = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"),
                               dtype=np.uint8)
    arrays.update({
        "format": np.array(FORMAT_TAG),
        "names": np.array(names, dtype=str) if names else np.zeros((0,), dtype="<U1"),
        "offsets": offsets,
        "motion": motion_all,
        "meta_json": meta_bytes,
    })
    handx_format.atomic_savez(path, arrays, allow_pickle=False)


def _read_clip_file(path: str):
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ClipStoreError(f"{path}: cannot read as .clips.npz: {err}") from err
    member = "format"
    try:  # every way a damaged file fails becomes one error naming the file and member
        with data:
            if "format" not in data.files or str(data["format"]) != FORMAT_TAG:
                raise ClipStoreError(f"{path}: not a {FORMAT_TAG} file")
            member = "names"
            names_array = data["names"]
            member = "offsets"
            offsets = data["offsets"]
            member = "motion"
            motion = data["motion"]
            member = "meta_json"
            meta = json.loads(data["meta_json"].tobytes().decode("utf-8"))
            member = "frame fields"
            frames = {f: data["frame/" + f] for f in meta.get("frame_fields", [])}
    except ClipStoreError:
        raise
    except KeyError as err:
        raise ClipStoreError(f"{path}: missing member {member!r} ({err})") from None
    except UnicodeDecodeError as err:
        raise ClipStoreError(f"{path}: {member}: not valid UTF-8 ({err})") from None
    except json.JSONDecodeError as err:
        raise ClipStoreError(f"{path}: {member}: not valid JSON ({err})") from None
    except Exception as err:  # bad CRC, truncated member, object (pickled) arrays
        raise ClipStoreError(f"{path}: {member}: cannot read: "
                             f"{type(err).__name__}: {err}") from None
    _check_layout(path, names_array, offsets, motion, meta)
    names = [str(n) for n in names_array]
    offsets = offsets.astype(np.int64)
    if offsets.shape != (len(names) + 1,) or offsets[-1] != motion.shape[0] or \
            np.any(np.diff(offsets) < 0):
        raise ClipStoreError(f"{path}: offsets do not match names and motion")
    return names, offsets, motion, meta, frames


def _check_layout(path: str, names, offsets, motion, meta) -> None:
    """Member dtypes, the meta JSON's shape, and unique clip names (never collapsed)."""
    if names.ndim != 1 or names.dtype.kind != "U":
        raise ClipStoreError(f"{path}: names: expected a 1-d str array, got {names.dtype} "
                             f"{names.shape}")
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise ClipStoreError(f"{path}: offsets: expected a 1-d integer array, got "
                             f"{offsets.dtype} {offsets.shape}")
    if motion.dtype.kind not in "fiu":
        raise ClipStoreError(f"{path}: motion: dtype {motion.dtype} is not numeric")
    n = len(names)
    if not isinstance(meta, dict) or not isinstance(meta.get("annotations"), dict):
        raise ClipStoreError(f"{path}: meta_json: expected an object with 'annotations'")
    for key in ("annotations", "extras"):
        for field, values in (meta.get(key) or {}).items():
            if not isinstance(values, list) or len(values) != n:
                raise ClipStoreError(f"{path}: meta_json: {key}.{field}: expected a list of "
                                     f"{n} per-clip values")
    unique, counts = np.unique(names, return_counts=True)
    if (counts > 1).any():
        dups = ", ".join(f"{str(u)!r} x{c}" for u, c in zip(unique[counts > 1][:5],
                                                       counts[counts > 1][:5]))
        raise ClipStoreError(f"{path}: {int((counts > 1).sum())} duplicate clip names "
                             f"({dups}) in {n} rows")


def load_clip_table(path: str | os.PathLike) -> ClipTable:
    """Columnar read of a `.clips.npz` (no per-clip dicts; fast for big files)."""
    path = os.fspath(path)
    names, offsets, motion, meta, _ = _read_clip_file(path)
    return ClipTable(names, offsets, motion, dict(meta["annotations"]))


def load_clips(path: str | os.PathLike) -> dict[str, dict]:
    """Read a `.clips.npz` back into {clip name: clip dict} (CONTRACTS.md)."""
    path = os.fspath(path)
    names, offsets, motion, meta, frames = _read_clip_file(path)
    clips: dict[str, dict] = {}
    for i, name in enumerate(names):
        lo, hi = offsets[i], offsets[i + 1]
        clip: dict[str, Any] = {MOTION_KEY: motion[lo:hi]}
        for field, values in meta["annotations"].items():
            if values[i] is not None:
                clip[field] = list(values[i])
        for field, array in frames.items():
            clip[field] = array[lo:hi]
        for field, values in meta.get("extras", {}).items():
            if values[i] is not None:
                clip[field] = values[i]
        clips[name] = clip
    return clips


def table_from_clips(clips: dict[str, dict]) -> ClipTable:
    """Columnar view of in-memory clips (motion concatenated as float32)."""
    names = list(clips)
    lengths = [np.asarray(clips[n][MOTION_KEY]).shape[0] for n in names]
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    motion = (np.concatenate([np.asarray(clips[n][MOTION_KEY], np.float32) for n in names])
              if names else np.zeros((0, 2, 21, 3), np.float32))
    annotations = {f: [clips[n].get(f) for n in names] for f in ANNOTATION_KEYS}
    return ClipTable(names, offsets, motion, annotations)


def is_clips_file(path: str | os.PathLike) -> bool:
    """True when `path` is our pickle-free format (checked by content, not name)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "format.npy" not in archive.namelist():
                return False
    except (zipfile.BadZipFile, OSError):
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["format"]) == FORMAT_TAG
    except Exception:
        return False


def load_any(path: str | os.PathLike, *, strict: bool = True) -> dict[str, dict]:
    """Load clips from either format, dispatching on the file's content.

    `strict=False` keeps malformed HandX records for `validate` to report per clip.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if is_clips_file(path):
        return load_clips(path)
    return handx_format.load_handx(path, strict=strict)


def load_any_table(path: str | os.PathLike) -> ClipTable:
    """Columnar view from either format (pickle-free files avoid per-clip dicts)."""
    path = os.fspath(path)
    if is_clips_file(path):
        return load_clip_table(path)
    return table_from_clips(handx_format.load_handx(path))


def is_writable(directory: str | os.PathLike) -> bool:
    """Whether files can be created in `directory` (or, if missing, where it would go)."""
    directory = os.path.abspath(os.fspath(directory))
    while not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent
    return os.access(directory, os.W_OK | os.X_OK)


def derived_dir(directory: str | os.PathLike) -> str:
    """Where files derived from `directory` (TFDS build, caches, statistics) are written:
    the directory itself when writable, else a folder of its own under $HANDX_CACHE_DIR
    (default ~/.cache/handx), so read-only shared datasets still work."""
    directory = os.path.abspath(os.fspath(directory))
    if is_writable(directory):
        return directory
    root = os.environ.get("HANDX_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "handx")
    digest = hashlib.blake2b(directory.encode(), digest_size=6).hexdigest()
    return os.path.join(root, f"{os.path.basename(directory) or 'data'}-{digest}")


def split_candidates(data_dir: str | os.PathLike, split: str) -> list[str]:
    """Files that can hold `split`, in order of preference."""
    data_dir = os.fspath(data_dir)
    return [os.path.join(data_dir, split + CLIPS_SUFFIX),
            os.path.join(data_dir, split + HANDX_SUFFIX)]


def _same_clip_names(clips_path: str, handx_path: str) -> bool:
    """Whether a .clips.npz and a HandX file list the same clip names (cheap: no payloads)."""
    try:
        with np.load(clips_path, allow_pickle=False) as data:
            ours = [str(n) for n in data["names"]]
        with zipfile.ZipFile(handx_path) as archive:
            theirs = [n[:-4] if n.endswith(".npy") else n for n in archive.namelist()]
    except Exception:  # unreadable files are reported when they are loaded
        return True
    return ours == theirs


def find_split(data_dir: str | os.PathLike, split: str) -> str:
    """Path of the file holding `split` in `data_dir` (pickle-free format preferred)."""
    candidates = split_candidates(data_dir, split)
    present = [c for c in candidates if os.path.isfile(c)]
    if len(present) == 2 and not _same_clip_names(*present):
        warnings.warn(f"{present[1]} and {os.path.basename(present[0])} hold different clips; "
                      f"using {os.path.basename(present[0])} (handx data convert the other "
                      f"one over it, or remove it)", stacklevel=2)
    if present:
        return present[0]
    raise FileNotFoundError(
        f"{os.fspath(data_dir)}: no {split!r} split; looked for "
        + ", ".join(os.path.basename(c) for c in candidates))


def config_data_dir(config) -> str:
    """`config.data.dir` of a task config; the trainer fills it in (synthetic data goes to <workdir>/data)."""
    d = config.data.dir
    if not d:
        raise ValueError("config.data.dir is not set: the trainer resolves it (synthetic data goes to <workdir>/data)")
    return str(d)
