"""Reader and writer of the HandX release format.

`{train,test}_can_pos_all_wotextfeat.npz` is an npz whose every member is a clip name
holding a pickled dict (`motion` (T, 2, 21, 3), `left_annotation`, `right_annotation`,
`interaction_annotation`: lists of str). Unpickling runs code chosen by the file, so we
never call `np.load(allow_pickle=True)`: we open the npz as a zip, parse each `.npy`
header ourselves and unpickle object payloads through `RestrictedUnpickler`, which admits
only numpy array/dtype/scalar reconstruction and plain containers, strings and numbers.
"""

from __future__ import annotations

import io
import os
import pickle
from handx_jax import atomic
import zipfile
from typing import Any

import numpy as np
from numpy._core import multiarray as _np_multiarray
from numpy._core import numeric as _np_numeric

ANNOTATION_KEYS = ("left_annotation", "right_annotation", "interaction_annotation")
MOTION_KEY = "motion"
MANO_KEYS = ("left_pose", "right_pose")


class UnsafePickleError(ValueError):
    """A pickle asked for a class or function outside the admitted set."""


def _safe_codecs_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes; only latin1 is admitted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode called with {type(text).__name__}, {encoding!r}")
    return text.encode("latin1")


# (module, name) -> object. numpy 1.x writes `numpy.core.*`, numpy 2.x `numpy._core.*`.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _safe_codecs_encode,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "complex"): complex,
    ("builtins", "bool"): bool,
    ("__builtin__", "unicode"): str,  # protocol-2 pickles written by Python 2
    ("__builtin__", "long"): int,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _np_multiarray._reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _np_multiarray.scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _np_numeric._frombuffer
# numpy's dtype classes (numpy.dtypes.Float32DType, ...) appear in some pickles.
for _name in dir(np.dtypes):
    if _name.endswith("DType"):
        _ALLOWED[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting numpy arrays, dtypes, scalars, containers, str and numbers only."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused pickled global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused pickle persistent id")


def restricted_loads(data: bytes) -> Any:
    """Unpickle `data` through `RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


class HandXFormatError(ValueError):
    """A HandX file that cannot be read; the message names the file and clip."""


def _read_npy_member(fp, path: str, key: str) -> Any:
    """Read one `.npy` member; object payloads go through the restricted unpickler."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:  # version 3.0 (utf-8 field names) has no public reader
            shape, fortran, dtype = np.lib.format._read_array_header(fp, version)
    except Exception as err:  # malformed header
        raise HandXFormatError(f"{path}: clip {key!r}: bad .npy header: {err}") from err
    if dtype.hasobject:
        try:
            array = RestrictedUnpickler(fp).load()
        except UnsafePickleError as err:
            raise HandXFormatError(f"{path}: clip {key!r}: {err}; file refused") from err
        except Exception as err:
            raise HandXFormatError(f"{path}: clip {key!r}: cannot unpickle: {err}") from err
        return array
    count = int(np.prod(shape, dtype=np.int64))
    data = fp.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise HandXFormatError(f"{path}: clip {key!r}: truncated array data")
    array = np.frombuffer(data, dtype=dtype, count=count)
    if fortran:
        return array.reshape(shape[::-1]).transpose().copy()
    return array.reshape(shape).copy()


def read_npz_members(path: str | os.PathLike) -> dict[str, Any]:
    """All members of an npz as {name: value}; 0-d object arrays are unwrapped."""
    path = os.fspath(path)
    out: dict[str, Any] = {}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise HandXFormatError(f"{path}: not an npz (zip) file: {err}") from err
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in out:  # a zip may repeat a member name: never keep only the last
                raise HandXFormatError(f"{path}: clip {key!r}: duplicate clip name")
            with archive.open(info) as fp:
                value = _read_npy_member(fp, path, key)
            if isinstance(value, np.ndarray) and value.dtype.hasobject and value.shape == ():
                value = value.item()
            out[key] = value
    return out


def _as_str_list(value: Any, path: str, key: str, field: str, strict: bool) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str):  # a single caption where a list was expected
        value = [value]
    if not isinstance(value, (list, tuple)):
        if not strict:
            return value
        raise HandXFormatError(
            f"{path}: clip {key!r}: {field} is {type(value).__name__}, expected a list of str")
    items = []
    for item in value:
        if isinstance(item, bytes):
            item = item.decode("utf-8")
        if not isinstance(item, str) and strict:
            raise HandXFormatError(
                f"{path}: clip {key!r}: {field} holds {type(item).__name__}, expected str")
        items.append(item)
    return items


def _clip_from_record(record: Any, path: str, key: str, strict: bool) -> Any:
    """Normalise one unpickled record into the in-memory clip dict (CONTRACTS.md)."""
    if not isinstance(record, dict):
        if not strict:
            return record
        raise HandXFormatError(
            f"{path}: clip {key!r}: holds {type(record).__name__}, expected a dict")
    clip: dict[str, Any] = {}
    for field, value in record.items():
        if field == MOTION_KEY:
            clip[field] = np.asarray(value)
        elif field in ANNOTATION_KEYS:
            clip[field] = _as_str_list(value, path, key, field, strict)
        else:
            clip[field] = np.asarray(value) if isinstance(value, (list, np.ndarray)) else value
    return clip


def load_handx(path: str | os.PathLike, *, strict: bool = True) -> dict[str, dict]:
    """Load a HandX release npz into {clip name: clip dict}, safely.

    Missing keys or bad shapes are kept as found: `validate.validate_clips` reports them.
    Records that are not dicts or captions that are not str raise HandXFormatError (naming
    file and clip) unless `strict=False`, which keeps them for the validator to report.
    Disallowed pickles and unreadable data always raise.
    """
    path = os.fspath(path)
    members = read_npz_members(path)
    return {key: _clip_from_record(record, path, key, strict)
            for key, record in members.items()}


def load_mano(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Load an optional `{split}_mano.npz`: clip -> {left_pose, right_pose} (T, 48)."""
    path = os.fspath(path)
    out = {}
    for key, record in read_npz_members(path).items():
        if not isinstance(record, dict):
            raise HandXFormatError(f"{path}: clip {key!r}: expected a dict of poses")
        out[key] = {k: np.asarray(v) for k, v in record.items()}
    return out


def _object_scalar(value: dict) -> np.ndarray:
    holder = np.empty((), dtype=object)
    holder[()] = value
    return holder


def atomic_savez(path: str | os.PathLike, arrays: dict[str, Any], *, allow_pickle: bool) -> None:
    """Write an (uncompressed) npz to a temp name beside `path`, then rename it into place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = atomic.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED,
                                                       allowZip64=True) as archive:
            for key, value in arrays.items():
                with archive.open(key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value),
                                              allow_pickle=allow_pickle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_handx(path: str | os.PathLike, clips: dict[str, dict]) -> None:
    """Write clips in the HandX release format (npz of pickled dicts), atomically."""
    arrays = {}
    for name, clip in clips.items():
        record = {}
        for field, value in clip.items():
            if field in ANNOTATION_KEYS:
                record[field] = [str(s) for s in value]
            else:
                record[field] = value
        arrays[name] = _object_scalar(record)
    atomic_savez(path, arrays, allow_pickle=True)


def save_mano(path: str | os.PathLike, poses: dict[str, dict[str, np.ndarray]]) -> None:
    """Write `{split}_mano.npz`: per clip a pickled dict of `left_pose`, `right_pose`."""
    atomic_savez(path, {k: _object_scalar(dict(v)) for k, v in poses.items()}, allow_pickle=True)
