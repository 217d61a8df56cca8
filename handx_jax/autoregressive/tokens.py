"""Motion token files: `DIR/motion_tokens/<fsq key>/<split>.npz`, pickle-free.

Arrays: `names` (unicode, one per clip), `codes` int32 (N, L_max) padded with -1,
`lengths` int32 (N,) valid tokens per clip, `meta_json` (a JSON string: fsq_key,
codebook_size, downsample, representation, levels, ...). `handx tokenize` writes them;
`load_tokens` is the one reader.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

TOKENS_DIRNAME = "motion_tokens"
PAD = -1


@dataclasses.dataclass(frozen=True)
class TokenSet:
    names: np.ndarray  # (N,) unicode
    codes: np.ndarray  # (N, L_max) int32, PAD after `lengths`
    lengths: np.ndarray  # (N,) int32
    meta: dict

    def __len__(self) -> int:
        return len(self.names)

    def clip_codes(self, i: int) -> np.ndarray:
        return self.codes[i, : self.lengths[i]]


def tokens_path(data_dir: str, key: str, split: str) -> str:
    """DIR/motion_tokens/<key>/<split>.npz (under `store.derived_dir` when DIR is read-only)."""
    from handx_jax.data import store

    return os.path.join(store.derived_dir(data_dir), TOKENS_DIRNAME, key, f"{split}.npz")


def save_tokens(path: str, tokens: TokenSet) -> None:
    """Atomic pickle-free write (temp name, then rename)."""
    from handx_jax.data.handx_format import atomic_savez

    atomic_savez(path, {"names": np.asarray(tokens.names, dtype=str), "codes": np.asarray(tokens.codes, np.int32),
                        "lengths": np.asarray(tokens.lengths, np.int32),
                        "meta_json": np.asarray(json.dumps(tokens.meta, sort_keys=True))}, allow_pickle=False)


def read_tokens(path: str) -> TokenSet:
    """A token file, checked for its fields and their shapes; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no token file (run `handx tokenize --fsq RUN --data DIR`)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("names", "codes", "lengths", "meta_json") if k not in f.files]
            if missing:
                raise ValueError(f"{path}: not a token file, lacks {missing}")
            names, codes, lengths, meta = f["names"], f["codes"], f["lengths"], json.loads(str(f["meta_json"]))
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable token file ({err})") from None
    if codes.ndim != 2 or codes.dtype != np.int32 or lengths.shape != (len(names),) or len(codes) != len(names):
        raise ValueError(f"{path}: codes {codes.shape} {codes.dtype}, lengths {lengths.shape} and "
                         f"{len(names)} names do not fit together")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > codes.shape[1]):
        raise ValueError(f"{path}: lengths outside [0, {codes.shape[1]}]")
    return TokenSet(names, codes, lengths.astype(np.int32), meta)


def load_tokens(data_dir: str, key: str, split: str) -> TokenSet:
    """The tokens of `split` made by the FSQ run whose `FsqRun.key` is `key`."""
    path = tokens_path(data_dir, key, split)
    tokens = read_tokens(path)
    if tokens.meta.get("fsq_key") != key:
        raise ValueError(f"{path}: made by tokenizer {tokens.meta.get('fsq_key')!r}, not {key!r}")
    return tokens


# ------------------------------------------------------------------------ writing --

SPLITS = ("train", "val", "test")


def tokenize_split(run, source: str, *, batch_size: int = 256, progress: bool = True) -> TokenSet:
    """Every clip of the clip file `source` encoded by `run` (an `FsqRun`), in fixed-shape batches.

    A clip of T frames gets ceil(T / downsample) tokens; shorter clips in a batch are padded
    with zero (normalised) features, as in training.
    """
    from tqdm import tqdm

    from handx_jax.data import normalization, store

    table = store.load_any_table(source)
    frames = np.diff(table.offsets).astype(np.int64)
    ds = run.downsample
    lengths = -(-frames // ds)
    width = int(lengths.max()) if len(lengths) else 0
    codes = np.full((len(table), width), PAD, np.int32)
    starts = range(0, len(table), batch_size)
    for start in tqdm(starts, desc=f"tokenize {os.path.basename(source)}", disable=not progress, leave=False):
        stop = min(start + batch_size, len(table))
        x = np.zeros((batch_size, width * ds, run.stats.mean.shape[0]), np.float32)
        for k, feats in enumerate(normalization.table_features(table, run.representation, start, stop)):
            x[k, : len(feats)] = run.stats.normalize(feats)
        batch_codes = run.encode(x)
        for k in range(stop - start):
            n = int(lengths[start + k])
            codes[start + k, :n] = batch_codes[k, :n]
    meta = dict(run.meta(), source=normalization.source_fingerprint(source), clips=len(table))
    return TokenSet(np.asarray(table.names, dtype=str), codes, lengths.astype(np.int32), meta)


def tokenize_dataset(run, data_dir: str, *, splits=SPLITS, batch_size: int = 256, progress: bool = True,
                     log=print) -> dict:
    """Write every present split's tokens; a split already written by the same tokenizer from
    the same source file is kept (so an interrupted run resumes). Returns {split: path}."""
    from handx_jax.data import normalization, store

    written = {}
    for split in splits:
        try:
            source = store.find_split(data_dir, split)
        except FileNotFoundError:
            continue
        path = tokens_path(data_dir, run.key, split)
        if os.path.isfile(path):
            try:
                old = read_tokens(path)
                if (old.meta.get("fsq_key") == run.key
                        and old.meta.get("source") == normalization.source_fingerprint(source)):
                    log(f"{split}: kept {path} ({len(old)} clips, tokenizer {run.key})")
                    written[split] = path
                    continue
            except ValueError as err:
                log(f"{split}: rewriting {path} ({err})")
        tokens = tokenize_split(run, source, batch_size=batch_size, progress=progress)
        save_tokens(path, tokens)
        used = np.unique(tokens.codes[tokens.codes >= 0]).size
        log(f"{split}: wrote {path} ({len(tokens)} clips, {int(tokens.lengths.sum())} tokens, "
            f"{used}/{run.codebook_size} codes used)")
        written[split] = path
    if not written:
        raise FileNotFoundError(f"{data_dir}: no split to tokenize (looked for {', '.join(splits)})")
    return written
