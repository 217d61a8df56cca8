"""grain input pipeline over the TFDS data source (CONTRACTS.md `make_dataset`).

Order of operations (all deterministic given `seed`):

1. TFDS array_record source of the split (built into DIR/tfds on first use).
2. Data-ratio subset (`subsets.subset_indices`, nested by seed), then this process's shard
   (`[shard_index::shard_count]`, default `jax.process_index()/process_count()`).
3. Epochs of a seeded global shuffle (`EpochSource`: one numpy permutation per epoch;
   grain's `index_shuffle` costs ~0.7 ms per element on small datasets).
4. Per example (`random_map`, rng from seed, epoch and index): pick one of the clip's K
   annotation triplets, crop (random start when shuffling) or pad to `seq_len` with a mask,
   take the representation features and normalise them.
5. `extra_transforms`, then `batch`.

Representation features are computed once per (split, representation) with whole-batch
numpy and cached beside the TFDS build (`cache/<split>_<representation>.f32`, float32
rows, plus offsets), so the per-example work is a slice, a subtraction and a pad.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

import grain

from handx_jax.data import normalization, representations, store, subsets, tfds_builder
from handx_jax.data.handx_format import ANNOTATION_KEYS, atomic_savez

CACHE_DIR = "cache"
CACHE_CHUNK = 2048


def _to_str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- feature cache

def _cache_paths(version_dir: str, split: str, representation: str) -> tuple[str, str]:
    root = os.path.join(version_dir, CACHE_DIR)
    if not os.path.isdir(root) and not store.is_writable(version_dir):
        root = os.path.join(store.derived_dir(version_dir), CACHE_DIR)
    stem = f"{split}_{representation}"
    return os.path.join(root, stem + ".f32"), os.path.join(root, stem + ".index.npz")


def build_feature_cache(version_dir: str, split: str, representation: str,
                        progress: bool = True) -> None:
    """Compute features of every record of `split` in one pass; write rows + offsets."""
    source = tfds_builder.data_source(version_dir, split)
    dim = representations.FEATURE_DIMS[representation]
    rows_path, index_path = _cache_paths(version_dir, split, representation)
    os.makedirs(os.path.dirname(rows_path), exist_ok=True)
    n = len(source)
    lengths = np.zeros(n, np.int64)
    names, counts = [], np.zeros(n, np.int32)
    tmp = rows_path + f".tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            for start in tqdm(range(0, n, CACHE_CHUNK), desc=f"features {split}",
                              disable=not progress, leave=False):
                stop = min(start + CACHE_CHUNK, n)
                records = [source[i] for i in range(start, stop)]
                motions = [np.asarray(r["motion"], np.float32) for r in records]
                for i, (r, m) in enumerate(zip(records, motions), start):
                    if int(r["clip_index"]) != i:
                        raise ValueError(f"{version_dir}: record {i} holds clip_index "
                                         f"{r['clip_index']}; rebuild the TFDS dataset")
                    lengths[i] = m.shape[0]
                    names.append(_to_str(r["name"]))
                    counts[i] = len(r[ANNOTATION_KEYS[0]])
                feats = [None] * len(motions)
                chunk_lengths = lengths[start:stop]
                for length in np.unique(chunk_lengths):
                    members = np.flatnonzero(chunk_lengths == length)
                    batch = np.stack([motions[m] for m in members])
                    out = representations.to_features(batch, representation)
                    for k, m in enumerate(members):
                        feats[m] = out[k]
                fh.write(np.concatenate(feats, axis=0).astype(np.float32).tobytes()
                         if feats else b"")
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Rows first, index last: the index (with the build's digest) marks a complete cache.
        os.replace(tmp, rows_path)
        atomic_savez(index_path, {"offsets": offsets, "names": np.array(names, dtype=str),
                                  "num_annotations": counts, "dim": np.int64(dim),
                                  "digest": np.array(tfds_builder.split_digest(version_dir, split))},
                     allow_pickle=False)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class FeatureCache:
    """Memory-mapped cached features; picklable (opens the map lazily in each process)."""

    def __init__(self, version_dir: str, split: str, representation: str):
        self.rows_path, self.index_path = _cache_paths(version_dir, split, representation)
        self.dim = representations.FEATURE_DIMS[representation]
        with np.load(self.index_path, allow_pickle=False) as index:
            self.offsets = index["offsets"]
            self.names = [str(s) for s in index["names"]]
            self.num_annotations = index["num_annotations"]
        self._rows = None

    @classmethod
    def ensure(cls, version_dir: str, split: str, representation: str,
               progress: bool = True) -> "FeatureCache":
        rows_path, index_path = _cache_paths(version_dir, split, representation)

        def fresh():
            if not (os.path.isfile(rows_path) and os.path.isfile(index_path)):
                return False
            with np.load(index_path, allow_pickle=False) as index:
                return str(index["digest"]) == tfds_builder.split_digest(version_dir, split)

        if not fresh():
            with tfds_builder.build_lock(os.path.dirname(rows_path)):
                if not fresh():
                    build_feature_cache(version_dir, split, representation, progress)
        return cls(version_dir, split, representation)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_rows"] = None
        return state

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            # A plain ndarray view of the map: slicing a np.memmap subclass costs ~15 us.
            self._rows = np.asarray(np.memmap(self.rows_path, dtype=np.float32, mode="r")
                                    ).reshape(-1, self.dim)
        return self._rows

    def __len__(self) -> int:
        return len(self.names)

    def clip(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i]:self.offsets[i + 1]]

    def chunks(self, rows_per_chunk: int = 1 << 20):
        for start in range(0, self.rows.shape[0], rows_per_chunk):
            yield np.asarray(self.rows[start:start + rows_per_chunk])


# --------------------------------------------------------------------------- grain pieces

class CaptionRecordSource:
    """The TFDS split's records, decoding only `clip_index` and the caption lists.

    The pipeline takes features from the cache, so decoding the motion tensor and the name
    through TFDS's generic numpy decoder (~85 us per record here) is wasted work; parsing
    the stored `tf.train.Example` and reading four fields costs ~35 us. `decode_full=True`
    uses TFDS's own decoder (tests check both agree).
    """

    FIELDS = ("clip_index", *ANNOTATION_KEYS)

    def __init__(self, tfds_source, decode_full: bool = False):
        self.tfds_source = tfds_source
        self.decode_full = decode_full or not hasattr(tfds_source, "data_source")

    def __len__(self) -> int:
        return len(self.tfds_source)

    def __getitem__(self, i: int) -> dict:
        if self.decode_full:
            record = self.tfds_source[i]
            return {k: record[k] for k in self.FIELDS}
        from tensorflow_datasets.proto import tf_example_pb2
        feature = tf_example_pb2.Example.FromString(
            self.tfds_source.data_source[i]).features.feature
        out = {"clip_index": int(feature["clip_index"].int64_list.value[0])}
        for key in ANNOTATION_KEYS:
            out[key] = list(feature[key].bytes_list.value)
        return out


class EpochSource:
    """Random-access stream over `source` at `indices`, epoch after epoch.

    Global position i reads clip `indices[perm_e[i % n]]` in epoch e = i // n, where perm_e
    is a seeded permutation per epoch (identity without shuffling). Length is n * epochs
    (sys.maxsize when endless). Deterministic in (seed, epoch, position), so an iterator
    position alone restores the stream.
    """

    def __init__(self, source, indices: np.ndarray, *, shuffle: bool, seed: int,
                 num_epochs: int | None):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_epochs = num_epochs
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        if self.num_epochs is None:
            return sys.maxsize
        return len(self.indices) * self.num_epochs

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_perms"] = {}
        return state

    def permutation(self, epoch: int) -> np.ndarray:
        """The clip order of `epoch` (cached for this and the previous epoch; thread-safe)."""
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(
                len(self.indices))
            kept = {e: p for e, p in self._perms.items() if e == epoch - 1}
            self._perms = {**kept, epoch: perm}
        return perm

    def clip_at(self, i: int) -> int:
        epoch, pos = divmod(int(i), len(self.indices))
        if self.num_epochs is not None and epoch >= self.num_epochs:
            raise IndexError(i)
        if self.shuffle:
            pos = int(self.permutation(epoch)[pos])
        return int(self.indices[pos])

    def __getitem__(self, i):
        return self.source[self.clip_at(i)]


class MakeExample(grain.transforms.RandomMap):
    """Record -> training example: caption pick, features, normalisation, crop/pad, mask."""

    def __init__(self, cache: FeatureCache, seq_len: int, mean, std, random_crop: bool):
        self.cache = cache
        self.seq_len = int(seq_len)
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.inv_std = None if std is None else (1.0 / np.asarray(std, np.float32))
        self.random_crop = random_crop

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        index = int(record["clip_index"])
        features = self.cache.clip(index)
        length = features.shape[0]
        pick = int(rng.integers(len(record[ANNOTATION_KEYS[0]])))
        start = 0
        if length > self.seq_len and self.random_crop:
            start = int(rng.integers(length - self.seq_len + 1))
        valid = min(length, self.seq_len)
        window = features[start:start + valid]
        if self.mean is not None:
            window = (window - self.mean) * self.inv_std
        motion = np.zeros((self.seq_len, self.cache.dim), np.float32)
        motion[:valid] = window
        mask = np.zeros((self.seq_len,), np.float32)
        mask[:valid] = 1.0
        return {
            "motion": motion,
            "mask": mask,
            "length": np.int32(valid),
            "clip_index": np.int32(index),
            "caption_left": _to_str(record["left_annotation"][pick]),
            "caption_right": _to_str(record["right_annotation"][pick]),
            "caption_relation": _to_str(record["interaction_annotation"][pick]),
        }


def stack_examples(examples: Sequence[Any]) -> Any:
    """Batch a list of examples (nested dicts/lists/tuples of arrays, scalars, str) along a
    new first axis: grain's default batching, ~20x cheaper for flat dicts of arrays."""
    first = examples[0]
    if isinstance(first, dict):
        return {k: stack_examples([e[k] for e in examples]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(stack_examples([e[i] for e in examples]) for i in range(len(first)))
    if isinstance(first, np.ndarray):
        return np.stack(examples)
    return np.asarray(examples)


def _apply_transform(ds: grain.MapDataset, transform: Any) -> grain.MapDataset:
    if isinstance(transform, grain.transforms.RandomMap) or hasattr(transform, "random_map"):
        return ds.random_map(transform)
    return ds.map(transform)


def default_shard() -> tuple[int, int]:
    """(process index, process count) of this JAX process."""
    import jax
    return jax.process_index(), jax.process_count()


def load_stats(data_dir: str, version_dir: str, representation: str) -> normalization.Stats:
    """Stats from DIR/stats_<rep>.npz (recomputed from the train file when stale); in a
    TFDS-only directory, computed from the cached train features."""
    try:
        return normalization.load_or_compute_stats(data_dir, representation)
    except FileNotFoundError:  # no source files and no stored statistics
        cache = FeatureCache.ensure(version_dir, "train", representation)
        stats = normalization.compute_stats(cache.chunks(), cache.dim)
        normalization.save_stats(normalization.stats_path(data_dir, representation), stats,
                                 representation)
        return stats


def make_dataset(data_dir: str | os.PathLike, split: str, *, batch_size: int,
                 seq_len: int = 60, representation: str = "joint_pos_w_scalar_rot",
                 normalize: bool = True, shuffle: bool = True, seed: int = 0,
                 num_epochs: int | None = None, data_ratio: float = 1.0,
                 extra_transforms: Sequence[Any] = (), shard_index: int | None = None,
                 shard_count: int | None = None, drop_remainder: bool = True,
                 worker_count: int = 0, read_threads: int = 2) -> grain.IterDataset:
    """Batched, sharded, checkpointable grain dataset of `split` (see module docstring).

    `read_threads` background threads prepare examples ahead of the consumer (overlapping
    input work with the train step); `worker_count` > 0 moves the work into grain worker
    processes. Neither changes the batches or the iterator state's meaning, but a state
    saved with workers must be restored into an iterator with the same `worker_count`.
    """
    data_dir = os.fspath(data_dir)
    representations._check(representation)
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if shard_index is None or shard_count is None:
        default_index, default_count = default_shard()
        shard_index = default_index if shard_index is None else shard_index
        shard_count = default_count if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")

    version_dir = tfds_builder.ensure_built(data_dir)
    source = tfds_builder.data_source(version_dir, split)
    cache = FeatureCache.ensure(version_dir, split, representation)
    stats = load_stats(data_dir, version_dir, representation) if normalize else None

    indices = subsets.subset_indices(cache.names, data_ratio, seed)
    indices = indices[shard_index::shard_count]
    if len(indices) == 0:
        raise ValueError(f"{data_dir}: split {split!r} at ratio {data_ratio} leaves no clips "
                         f"for shard {shard_index}/{shard_count}")
    if drop_remainder and num_epochs is not None and len(indices) * num_epochs < batch_size:
        raise ValueError(f"{data_dir}: {len(indices)} clips x {num_epochs} epochs is less than "
                         f"one batch of {batch_size} (shard {shard_index}/{shard_count})")

    ds = grain.MapDataset.source(EpochSource(CaptionRecordSource(source), indices, shuffle=shuffle, seed=seed,
                                             num_epochs=num_epochs))
    ds = ds.random_map(MakeExample(cache, seq_len, stats.mean if stats else None,
                                   stats.std if stats else None, random_crop=shuffle),
                       seed=seed)
    for transform in extra_transforms:
        ds = _apply_transform(ds, transform)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=stack_examples)
    iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                   prefetch_buffer_size=max(64, 2 * batch_size)))
    if worker_count > 0:
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter_ds


def state_to_json(state: Any) -> str:
    """Iterator state as JSON text (for checkpoints next to orbax state)."""
    return json.dumps(state, default=lambda o: o.item() if hasattr(o, "item") else str(o))
