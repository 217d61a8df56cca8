"""SentencePiece tokenizer trained on the dataset's train captions, and the grain transform.

The tokenizer lives with its dataset as `DIR/spm.model` (+ `DIR/spm.vocab`). Ids: 0 is
padding, 1 is unknown; there is no BOS/EOS (the text encoder adds its own CLS token).
`TokenizeCaptions` is the grain MapTransform the diffusion task puts into the data
pipeline: it turns `caption_left/right/relation` into fixed-length int32
`tokens_left/right/relation` plus float32 `tokens_*_mask` and drops the strings, so the
batches that reach jit are numeric.
"""

from __future__ import annotations

import io
import os
from handx_jax import atomic
from typing import Iterable, Sequence

import numpy as np

ROLES = ("left", "right", "relation")
CAPTION_KEYS = {"left": "caption_left", "right": "caption_right", "relation": "caption_relation"}
PAD_ID = 0
UNK_ID = 1
MODEL_NAME = "spm.model"


def _spm():
    import sentencepiece

    return sentencepiece


def train_tokenizer(captions: Iterable[str], out_prefix: str, vocab_size: int = 2000) -> str:
    """Train a unigram SentencePiece model on `captions`; write `out_prefix.model/.vocab` atomically.

    `vocab_size` is an upper bound (small caption sets yield fewer pieces). Returns the
    path of the `.model` file.
    """
    captions = [c.strip() for c in captions if c and c.strip()]
    if not captions:
        raise ValueError(f"train_tokenizer({out_prefix!r}): no non-empty captions to train on")
    out_dir = os.path.dirname(os.path.abspath(out_prefix))
    os.makedirs(out_dir, exist_ok=True)
    model_buf = io.BytesIO()
    spm = _spm()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(captions),
        model_writer=model_buf,
        vocab_size=int(vocab_size),
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        eos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    proto = model_buf.getvalue()
    processor = spm.SentencePieceProcessor(model_proto=proto)
    vocab_lines = "".join(f"{processor.id_to_piece(i)}\t{processor.get_score(i)}\n" for i in range(processor.get_piece_size()))
    model_path = out_prefix + ".model"
    _atomic_write(model_path, proto)
    _atomic_write(out_prefix + ".vocab", vocab_lines.encode("utf-8"))
    return model_path


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = atomic.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def tokenizer_path(data_dir: str) -> str:
    return os.path.join(data_dir, MODEL_NAME)


def load_tokenizer(data_dir_or_model: str):
    """Load the SentencePiece processor from `DIR/spm.model` (or a `.model` path)."""
    path = data_dir_or_model if data_dir_or_model.endswith(".model") else tokenizer_path(data_dir_or_model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no tokenizer at {path}: run `handx text tokenizer --src {os.path.dirname(path) or '.'}`")
    return _spm().SentencePieceProcessor(model_file=path)


def split_captions(clips: dict[str, dict]) -> list[str]:
    """Every caption of every role in a clips dict (the tokenizer's training text)."""
    out = []
    for clip in clips.values():
        for key in ("left_annotation", "right_annotation", "interaction_annotation"):
            out.extend(str(c) for c in clip.get(key, ()))
    return out


def ensure_tokenizer(data_dir: str, vocab_size: int = 2000) -> str:
    """Return `DIR/spm.model`, training it from the train split's captions when missing."""
    path = tokenizer_path(data_dir)
    if os.path.isfile(path):
        return path
    from handx_jax.data import store

    clips = store.load_any(store.find_split(data_dir, "train"))
    return train_tokenizer(split_captions(clips), os.path.join(data_dir, "spm"), vocab_size)


def encode_batch(processor, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode strings into (N, max_len) int32 ids (truncated, 0-padded) and float32 masks."""
    ids = processor.encode([str(t) for t in texts])
    tokens = np.zeros((len(texts), max_len), np.int32)
    for i, row in enumerate(ids):
        row = row[:max_len]
        tokens[i, : len(row)] = row
    return tokens, (tokens != PAD_ID).astype(np.float32)


def encode_triples(processor, triples: Sequence[Sequence[str]], max_len: int) -> dict[str, np.ndarray]:
    """`[(left, right, relation), ...]` -> batch dict with `tokens_<role>` and `tokens_<role>_mask`."""
    out = {}
    for r, role in enumerate(ROLES):
        tokens, mask = encode_batch(processor, [t[r] for t in triples], max_len)
        out[f"tokens_{role}"] = tokens
        out[f"tokens_{role}_mask"] = mask
    return out


try:  # grain is a pinned dependency; keep the module importable for plain tokenizer use.
    import grain.python as _grain

    _MapTransform = _grain.MapTransform
except Exception:  # pragma: no cover
    _MapTransform = object


def tokenize_transform(data_dir: str, vocab_size: int, max_len: int) -> "TokenizeCaptions":
    """The dataset's tokenizer (trained on first use) as a grain transform, checked against `vocab_size`."""
    path = ensure_tokenizer(data_dir, vocab_size)
    size = load_tokenizer(path).get_piece_size()
    if size > vocab_size:
        raise ValueError(f"{path} has {size} pieces but config.model.vocab_size is {vocab_size}; raise it")
    return TokenizeCaptions(path, max_len)


class TokenizeCaptions(_MapTransform):
    """grain MapTransform: captions -> fixed-length token ids and masks; strings removed.

    Holds the serialized model (bytes), not the processor, so it pickles into grain
    worker processes; the processor is built lazily on first use in each process.
    """

    def __init__(self, model_path: str, max_len: int):
        with open(model_path, "rb") as f:
            self._proto = f.read()
        self.max_len = int(max_len)
        self._processor = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_processor"] = None
        return state

    @property
    def processor(self):
        if self._processor is None:
            self._processor = _spm().SentencePieceProcessor(model_proto=self._proto)
        return self._processor

    def map(self, element: dict) -> dict:
        element = dict(element)
        for role in ROLES:
            key = CAPTION_KEYS[role]
            if key not in element:
                raise KeyError(f"TokenizeCaptions: example has no field {key!r} (fields: {sorted(element)})")
            text = element.pop(key)
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            tokens, mask = encode_batch(self.processor, [str(text)], self.max_len)
            element[f"tokens_{role}"] = tokens[0]
            element[f"tokens_{role}_mask"] = mask[0]
        return element


class LookupTextEmbeddings(_MapTransform):
    """grain MapTransform for precomputed text embeddings: captions -> `text_embedding` (3, E).

    See `load_text_embeddings` for the accepted file layouts.
    """

    def __init__(self, path: str, table: "TextEmbeddingTable | None" = None):
        self.path = path
        self.table = load_text_embeddings(path) if table is None else table

    def map(self, element: dict) -> dict:
        element = dict(element)
        texts = [element.pop(CAPTION_KEYS[role]) for role in ROLES]
        element["text_embedding"] = self.table.lookup(texts, int(element.get("clip_index", -1)))
        return element


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TextEmbeddingTable:
    """Precomputed text embeddings, looked up by (role, caption), by caption, or by clip index.

    `rows[role]` maps a caption to its row of `matrices[role]` (N_role, E); a role-agnostic
    file shares one mapping and matrix across the three roles. `meta` is the file's
    identity record (empty for files made elsewhere).
    """

    def __init__(self, path: str, rows: dict | None, matrices: dict | None, by_clip: np.ndarray | None,
                 meta: dict | None = None):
        self.path, self.rows, self.matrices, self.by_clip = path, rows, matrices, by_clip
        self.meta = dict(meta or {})
        sample = next(iter(matrices.values())) if matrices else by_clip[0]
        self.dim = int(sample.shape[-1])

    def __contains__(self, role_caption) -> bool:
        role, caption = role_caption
        return self.rows is not None and _text(caption) in self.rows[role]

    def missing(self, texts: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
        """(role, caption) pairs of `texts` (triples) that the table lacks (caption tables only)."""
        if self.rows is None:
            return []
        out = {(role, _text(t[r])) for t in texts for r, role in enumerate(ROLES)}
        return sorted(rc for rc in out if rc[1] not in self.rows[rc[0]])

    def lookup(self, texts: Sequence[str], clip_index: int = -1) -> np.ndarray:
        """(3, E) float32 for one (left, right, relation) triple."""
        if self.rows is not None:
            out = np.empty((len(ROLES), self.dim), np.float32)
            for r, role in enumerate(ROLES):
                text = _text(texts[r])
                row = self.rows[role].get(text)
                if row is None:
                    raise KeyError(f"{self.path}: no {role} embedding for caption {text!r} "
                                   "(embed the dataset's captions again: `handx text embed`)")
                out[r] = self.matrices[role][row]
            return out
        if not 0 <= clip_index < len(self.by_clip):
            raise KeyError(f"{self.path}: clip_index {clip_index} outside 0..{len(self.by_clip) - 1}")
        return self.by_clip[clip_index].astype(np.float32)


META_KEY = "meta_json"


def _pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (UTF-8 bytes uint8, end offsets int64): compact where a fixed-width str
    array would pad every caption to the longest one."""
    encoded = [str(s).encode("utf-8") for s in strings]
    offsets = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def _unpack_strings(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = np.asarray(blob, np.uint8).tobytes()
    starts = np.concatenate([[0], offsets[:-1]]) if len(offsets) else offsets
    return [data[a:b].decode("utf-8") for a, b in zip(starts.tolist(), np.asarray(offsets).tolist())]


def save_text_embeddings(path: str, per_role: dict[str, tuple[Sequence[str], np.ndarray]], meta: dict) -> str:
    """Write per-role caption embeddings (layout 3 of `load_text_embeddings`) atomically, pickle-free."""
    import json

    arrays = {META_KEY: np.array(json.dumps(meta, sort_keys=True))}
    for role in ROLES:
        captions, emb = per_role[role]
        emb = np.asarray(emb, np.float32)
        if emb.ndim != 2 or len(emb) != len(captions):
            raise ValueError(f"save_text_embeddings: {role} embeddings {emb.shape} do not match {len(captions)} captions")
        blob, offsets = _pack_strings(captions)
        arrays[f"captions_{role}_utf8"], arrays[f"captions_{role}_offsets"] = blob, offsets
        arrays[f"embeddings_{role}"] = emb
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = atomic.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp_", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_text_embeddings(path: str) -> TextEmbeddingTable:
    """Read precomputed text embeddings (pickle-free npz).

    Layout 1, by caption, any role: `captions` (N,) str and `embeddings` (N, E) float.
    Layout 2, by clip: `left`, `right`, `relation`, each (num_clips, E), indexed by the
    example's `clip_index` (the clip's position in the split), whatever caption was drawn.
    Layout 3, by role and caption (what `handx text embed` writes): for each of left, right,
    relation the captions as UTF-8 bytes `captions_<role>_utf8` (uint8) with end offsets
    `captions_<role>_offsets` (int64), and `embeddings_<role>` (N_role, E) float32, plus
    `meta_json` (the identity of the tokenizer and text tower that produced them).
    """
    import json

    if not os.path.isfile(path):
        raise FileNotFoundError(f"text embeddings file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        meta = json.loads(str(data[META_KEY])) if META_KEY in keys else {}
        role_keys = {f"{p}_{r}{q}" for p, q in (("captions", "_utf8"), ("captions", "_offsets"), ("embeddings", ""))
                     for r in ROLES}
        if role_keys <= keys:
            rows, matrices = {}, {}
            for role in ROLES:
                captions = _unpack_strings(data[f"captions_{role}_utf8"], data[f"captions_{role}_offsets"])
                emb = np.asarray(data[f"embeddings_{role}"], np.float32)
                if emb.ndim != 2 or len(emb) != len(captions):
                    raise ValueError(f"{path}: embeddings_{role} {emb.shape} must be (len(captions_{role})={len(captions)}, E)")
                rows[role] = {c: i for i, c in enumerate(captions)}
                matrices[role] = emb
            if len({m.shape[1] for m in matrices.values()}) != 1:
                raise ValueError(f"{path}: the roles' embeddings differ in width {[m.shape for m in matrices.values()]}")
            return TextEmbeddingTable(path, rows, matrices, None, meta)
        if {"captions", "embeddings"} <= keys:
            captions = [str(c) for c in data["captions"]]
            emb = np.asarray(data["embeddings"], np.float32)
            if emb.ndim != 2 or len(emb) != len(captions):
                raise ValueError(f"{path}: embeddings {emb.shape} must be (len(captions)={len(captions)}, E)")
            shared = {c: i for i, c in enumerate(captions)}
            return TextEmbeddingTable(path, {r: shared for r in ROLES}, {r: emb for r in ROLES}, None, meta)
        if set(ROLES) <= keys:
            arrays = [np.asarray(data[r], np.float32) for r in ROLES]
            if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 2:
                raise ValueError(f"{path}: left/right/relation must share one (num_clips, E) shape, got {[a.shape for a in arrays]}")
            return TextEmbeddingTable(path, None, None, np.stack(arrays, axis=1), meta)
    raise ValueError(f"{path}: expected fields captions_<role>_utf8/_offsets+embeddings_<role>, captions+embeddings or "
                     f"left+right+relation, found {sorted(keys)}")
