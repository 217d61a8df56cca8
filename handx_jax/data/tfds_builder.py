"""TFDS builder for HandX clips (array_record, no TensorFlow).

Reads `{train,test}` from a data directory in either format (`store.find_split`), checks
them with `validate.validate_clips`, and writes an array_record TFDS dataset under
`OUT/handx_motion/<version>/`. Records keep the file's clip order (shuffling disabled), so
record i is clip i of the split and `clip_index` equals i.

The builder lives outside a registered TFDS package, so `_info` builds
`DatasetInfo(builder=self, ...)` directly; readers use `tfds.builder_from_directory`
(see `load_builder`) and `builder.as_data_source(split)`, which needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys

import numpy as np

from handx_jax.data import manifest, store, validate
from handx_jax.data.handx_format import ANNOTATION_KEYS

DATASET_NAME = "handx_motion"
VERSION = "1.0.0"
SPLITS = ("train", "test")
FINGERPRINT_FILE = "handx_sources.json"
CAPTION_FIELDS = {"left_annotation": "caption_left", "right_annotation": "caption_right",
                  "interaction_annotation": "caption_relation"}


class InvalidSourceError(ValueError):
    """Source clips failed validation; the message lists the problems."""


def _tfds():
    import tensorflow_datasets as tfds  # heavy import: only where needed
    return tfds


def source_fingerprint(src_dir: str) -> dict:
    """Name, size and mtime of every source split file (detects stale builds)."""
    out = {}
    for split in SPLITS:
        try:
            path = store.find_split(src_dir, split)
        except FileNotFoundError:
            continue
        st = os.stat(path)
        out[split] = {"file": os.path.basename(path), "size": st.st_size,
                      "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    return out


def _make_builder_class():
    tfds = _tfds()

    class HandxMotion(tfds.core.GeneratorBasedBuilder):
        """Bimanual hand motion clips with left/right/relation captions."""

        name = DATASET_NAME
        VERSION = tfds.core.Version(VERSION)
        RELEASE_NOTES = {str(VERSION): "Clips from HandX-format or .clips.npz files."}

        # TFDS locates a builder's source file through importlib resources, which fails
        # for an editable install without `importlib_resources`; we have no checksums.
        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):
            return None

        def __init__(self, *, src_dir: str | None = None, **kwargs):
            # src_dir is only needed to build; `tfds.data_source(DATASET_NAME, data_dir=...)`
            # constructs the class without it to read a finished build.
            self._src_dir = None if src_dir is None else os.fspath(src_dir)
            super().__init__(**kwargs)

        def _info(self):
            text_list = tfds.features.Sequence(tfds.features.Text())
            return tfds.core.DatasetInfo(
                builder=self,
                description="Bimanual hand motion (T, 2, 21, 3) in metres with captions.",
                features=tfds.features.FeaturesDict({
                    "name": tfds.features.Text(),
                    "clip_index": tfds.features.Scalar(dtype=np.int32),
                    "length": tfds.features.Scalar(dtype=np.int32),
                    "motion": tfds.features.Tensor(shape=(None, 2, 21, 3), dtype=np.float32),
                    **{field: text_list for field in ANNOTATION_KEYS},
                }),
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            if self._src_dir is None:
                raise ValueError(f"{DATASET_NAME}: building needs src_dir (handx data build)")
            splits = {}
            for split in SPLITS:
                try:
                    path = store.find_split(self._src_dir, split)
                except FileNotFoundError:
                    continue
                splits[split] = self._generate_examples(path)
            if not splits:
                raise FileNotFoundError(store.find_split(self._src_dir, "train"))
            return splits

        def _generate_examples(self, path):
            clips = store.load_any(path)
            problems = validate.validate_clips(clips, path)
            if problems:
                shown = "\n  ".join(str(p) for p in problems[:20])
                more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
                raise InvalidSourceError(f"{path}: {len(problems)} problems:\n  {shown}{more}")
            for i, (name, clip) in enumerate(clips.items()):
                motion = np.asarray(clip["motion"], np.float32)
                yield f"{i:09d}", {
                    "name": name,
                    "clip_index": i,
                    "length": motion.shape[0],
                    "motion": motion,
                    **{f: list(clip.get(f) or []) for f in ANNOTATION_KEYS},
                }

    return HandxMotion


_BUILDER_CLASS = None


def builder_class():
    """The TFDS builder class (created once; TFDS registers classes by name)."""
    global _BUILDER_CLASS
    if _BUILDER_CLASS is None:
        _BUILDER_CLASS = _make_builder_class()
    return _BUILDER_CLASS


def version_dir(out_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(out_dir), DATASET_NAME, VERSION)


def build(src_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
          overwrite: bool = False) -> str:
    """Build the TFDS dataset from `src_dir` into `out_dir`; returns the version directory."""
    src_dir, out_dir = os.fspath(src_dir), os.fspath(out_dir)
    target = version_dir(out_dir)
    if os.path.isdir(target):
        if not overwrite and is_complete(target):
            return target
        if not overwrite:  # an interrupted build: its completion record was never written
            print(f"{target}: incomplete TFDS build (no {manifest.MANIFEST_NAME}); building it again", file=sys.stderr)
        shutil.rmtree(target)
    fingerprint = source_fingerprint(src_dir)
    if "train" not in fingerprint and "test" not in fingerprint:
        raise FileNotFoundError(f"{src_dir}: no train or test split to build "
                                f"(looked for {', '.join(store.split_candidates(src_dir, 'train'))})")
    builder = builder_class()(src_dir=src_dir, data_dir=out_dir, file_format="array_record")
    builder.download_and_prepare()
    tmp = os.path.join(target, FINGERPRINT_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"src_dir": os.path.abspath(src_dir), "splits": fingerprint}, fh, indent=1)
    os.replace(tmp, os.path.join(target, FINGERPRINT_FILE))
    files = [os.path.join(root, name) for root, _, names in os.walk(target) for name in names
             if name != manifest.MANIFEST_NAME]
    manifest.write_manifest(target, files, {split: int(info.num_examples) for split, info in builder.info.splits.items()},
                            {"builder": DATASET_NAME, "version": VERSION, "src_dir": os.path.abspath(src_dir)})
    return target  # complete only now: the manifest is written last


def is_complete(target: str) -> bool:
    """A version directory whose build finished (its completion manifest was written last)."""
    return manifest.read_manifest(target) is not None


def is_current(src_dir: str | os.PathLike, out_dir: str | os.PathLike) -> bool:
    """True when `out_dir` holds a build of the current source files of `src_dir`."""
    path = os.path.join(version_dir(out_dir), FINGERPRINT_FILE)
    if not os.path.isfile(path) or not is_complete(version_dir(out_dir)):
        return False
    with open(path) as fh:
        recorded = json.load(fh).get("splits")
    return recorded == source_fingerprint(os.fspath(src_dir))


@contextlib.contextmanager
def build_lock(directory: str):
    """Exclusive lock on `directory`/.lock, so processes sharing a data directory (several
    JAX processes on one host) build derived files once while the others wait."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(data_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    """Build DIR/tfds from DIR's clip files if missing or stale; returns the version dir."""
    data_dir = os.fspath(data_dir)
    if out_dir is None:
        out_dir = os.path.join(data_dir, "tfds")
        if not os.path.isdir(version_dir(out_dir)):  # read-only DIR: build elsewhere
            out_dir = os.path.join(store.derived_dir(data_dir), "tfds")
    out_dir = os.fspath(out_dir)
    target = version_dir(out_dir)

    def usable():  # current, or a TFDS-only directory without source files (built elsewhere)
        return os.path.isdir(target) and (is_current(data_dir, out_dir)
                                          or (not source_fingerprint(data_dir)
                                              and os.path.isfile(os.path.join(target, FINGERPRINT_FILE))))

    if usable():
        return target
    with build_lock(out_dir):
        if usable():  # another process built it while we waited
            return target
        if os.path.isdir(target):
            print(f"{out_dir}: source files changed since the TFDS build; rebuilding")
        return build(data_dir, out_dir, overwrite=True)


def load_builder(version_path: str | os.PathLike):
    """A read-only builder from a built version directory (no builder class needed)."""
    return _tfds().builder_from_directory(os.fspath(version_path))


def data_source(version_path: str | os.PathLike, split: str):
    """Random-access TFDS data source of `split` (decoded numpy dicts)."""
    builder = load_builder(version_path)
    if split not in builder.info.splits:
        raise KeyError(f"{version_path}: no split {split!r}; has {list(builder.info.splits)}")
    return builder.as_data_source(split=split)


def split_digest(version_path: str | os.PathLike, split: str) -> str:
    """Short digest of a built split's record files (keys caches derived from it)."""
    h = hashlib.blake2b(digest_size=8)
    root = os.fspath(version_path)
    for name in sorted(os.listdir(root)):
        if f"-{split}.array_record" in name:
            st = os.stat(os.path.join(root, name))
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()
