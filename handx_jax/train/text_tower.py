"""The frozen text tower stage: one contrastive text-motion model per dataset, trained
through this trainer, whose text side conditions every generator through precomputed
per-role caption embeddings.

- `train_tower(config, workdir, data_dir)`: train (or resume) the tower; its tokenizer and
  statistics are copied into its run directory.
- `embed_dataset(tower_dir, data_dir)`: every distinct caption of every split, per role,
  embedded once in batches into `DIR/text_embeddings/<key>.npz`, where `key` combines the
  content hashes of the tokenizer and of the tower's weights (`TowerIdentity`), so a
  changed tokenizer or tower can never be silently reused.
- `prepare_run(config)`: what the trainer calls for a generator config with
  `model.text = "tower"`: the tower trained when missing, the embeddings written when
  missing, and `model.text_embeddings_path` / `model.text_key` filled in (they go into the
  run's config.json, and every later reader checks them).
- `CaptionEmbedder(config)`: triples -> (N, 3, E) for sampling: the table first, the tower
  for captions it lacks (new prompts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from typing import Sequence

import numpy as np

from handx_jax.text import tokenizer as tokenizer_lib

EMBEDDINGS_DIRNAME = "text_embeddings"
TOWER_DIRNAME = "text_tower"
SPLITS = ("train", "val", "test")


class StaleTextEmbeddings(ValueError):
    """A tokenizer, tower or embeddings file is not the one a run or file was made with."""


@dataclasses.dataclass(frozen=True)
class TowerIdentity:
    """Content hashes of the tokenizer and of the tower's text weights."""

    tokenizer_sha256: str
    tower_sha256: str
    tower_dir: str = ""
    tower_step: int = -1

    @property
    def key(self) -> str:
        return f"{self.tokenizer_sha256[:12]}-{self.tower_sha256[:12]}"

    def meta(self) -> dict:
        return {"key": self.key, "tokenizer_sha256": self.tokenizer_sha256, "tower_sha256": self.tower_sha256,
                "tower_dir": self.tower_dir, "tower_step": self.tower_step}


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def params_sha256(tree) -> str:
    """Hash of a parameter tree: names, dtypes, shapes and bytes, in sorted name order."""
    import flax

    digest = hashlib.sha256()
    for name, value in sorted(flax.traverse_util.flatten_dict(tree, sep="/").items()):
        arr = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def default_tower_dir(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), TOWER_DIRNAME)


def tower_dir_of(config) -> str:
    """`model.text_tower`, or `<data.dir>/text_tower` when it is empty."""
    given = str(config.model.get("text_tower", "") or "")
    return os.path.abspath(given) if given else default_tower_dir(str(config.data.dir))


def has_checkpoint(workdir: str) -> bool:
    from handx_jax.train import checkpoint

    return os.path.isdir(workdir) and bool(checkpoint.all_steps(workdir))


# ------------------------------------------------------------------------ training --


def train_tower(config, workdir: str, data_dir: str) -> dict:
    """Train (or resume) the text tower of `data_dir` in `workdir`; copies the tokenizer and
    joint_pos statistics into `workdir` so its identity does not depend on the dataset later."""
    from handx_jax.data import normalization
    from handx_jax.train import loop

    if config.get("family") != "text_tower":
        raise ValueError(f"a text tower needs a configs/text_tower.py config, got family {config.get('family')!r}")
    data_dir = os.path.abspath(data_dir)
    with config.ignore_type():
        config.data.dir = data_dir
    loop.add_trainer_defaults(config)
    tokenizer_lib.ensure_tokenizer(data_dir, int(config.model.vocab_size))
    normalization.load_or_compute_stats(data_dir, "joint_pos")
    os.makedirs(workdir, exist_ok=True)
    _copy_tokenizer(workdir, data_dir)
    result = loop.train(config, workdir)
    stats = os.path.join(data_dir, "stats_joint_pos.npz")
    _copy_atomic(stats, os.path.join(workdir, "stats_joint_pos.npz"))
    return result


def _copy_atomic(src: str, dst: str) -> None:
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _copy_tokenizer(workdir: str, data_dir: str) -> None:
    """The tower keeps the tokenizer it is trained with; a resumed tower refuses another one."""
    ours = tokenizer_lib.tokenizer_path(data_dir)
    kept = os.path.join(workdir, tokenizer_lib.MODEL_NAME)
    if os.path.isfile(kept) and has_checkpoint(workdir) and sha256_file(kept) != sha256_file(ours):
        raise StaleTextEmbeddings(
            f"text tower {workdir} was trained with another tokenizer than {ours} "
            f"(sha256 {sha256_file(kept)[:12]} vs {sha256_file(ours)[:12]}); train a new tower in another directory")
    _copy_atomic(ours, kept)


# ------------------------------------------------------------------------ identity --


def load_tower(tower_dir: str):
    """(config, EMA params, step) of a trained tower; clear errors when it is not one."""
    from handx_jax.train import checkpoint

    tower_dir = os.path.abspath(tower_dir)
    if not has_checkpoint(tower_dir):
        raise FileNotFoundError(f"no trained text tower in {tower_dir}: run `handx text tower --data DIR "
                                f"--workdir {tower_dir}`")
    config, params, step = checkpoint.restore_params(tower_dir, ema=True)
    if config.get("family") not in ("text_tower", "evaluator"):
        raise ValueError(f"{tower_dir} holds a {config.get('family')!r} run, not a text tower")
    return config, params, step


_IDENTITY_CACHE: dict = {}


def tower_identity(tower_dir: str, data_dir: str | None = None) -> TowerIdentity:
    """The identity of a trained tower: its tokenizer's and text weights' content hashes.

    With `data_dir`, the dataset's tokenizer must be the tower's (else StaleTextEmbeddings).
    """
    import flax.linen as nn

    tower_dir = os.path.abspath(tower_dir)
    kept = os.path.join(tower_dir, tokenizer_lib.MODEL_NAME)
    if not os.path.isfile(kept):
        raise FileNotFoundError(f"text tower {tower_dir} has no {tokenizer_lib.MODEL_NAME}: train it with `handx text tower`")
    tokenizer_sha = sha256_file(kept)
    if data_dir is not None:
        ours = tokenizer_lib.tokenizer_path(data_dir)
        if os.path.isfile(ours) and sha256_file(ours) != tokenizer_sha:
            raise StaleTextEmbeddings(
                f"the tokenizer {ours} (sha256 {sha256_file(ours)[:12]}) is not the one text tower {tower_dir} was "
                f"trained with ({tokenizer_sha[:12]}): its embeddings would mean other token ids; train a new "
                "tower (`handx text tower --data DIR --workdir NEW`)")
    from handx_jax.train import checkpoint

    steps = checkpoint.all_steps(tower_dir)
    cache_key = (tower_dir, tokenizer_sha, tuple(steps))
    if cache_key not in _IDENTITY_CACHE:
        _, params, step = load_tower(tower_dir)
        text_params = nn.unbox(params)["text_encoder"]
        _IDENTITY_CACHE[cache_key] = TowerIdentity(tokenizer_sha, params_sha256(text_params), tower_dir, int(step))
    return _IDENTITY_CACHE[cache_key]


def embeddings_path(data_dir: str, identity: TowerIdentity) -> str:
    return os.path.join(os.path.abspath(data_dir), EMBEDDINGS_DIRNAME, f"{identity.key}.npz")


def check_table(table: tokenizer_lib.TextEmbeddingTable, key: str) -> None:
    """Refuse an embeddings file whose recorded identity is not `key`."""
    found = table.meta.get("key")
    if found != key:
        raise StaleTextEmbeddings(
            f"{table.path} was made by tokenizer/tower {found or 'unknown'}, not {key}: "
            "the tokenizer or the text tower changed since; re-embed (`handx text embed`) and retrain the run")


# ----------------------------------------------------------------------- embedding --


class TowerEncoder:
    """A tower's text side, jitted: (role captions) -> per-role CLS embeddings."""

    def __init__(self, tower_dir: str | None, batch_size: int = 512, *, loaded=None):
        """From a tower run directory, or `loaded` = (config, params, tokenizer) already in memory."""
        import jax

        from handx_jax.models import evaluator as evaluator_model

        if loaded is None:
            self.config, self.params, self.step = load_tower(tower_dir)
            self.tokenizer = tokenizer_lib.load_tokenizer(os.path.join(os.path.abspath(tower_dir), tokenizer_lib.MODEL_NAME))
        else:
            (self.config, self.params, self.tokenizer), self.step = loaded, -1
        self.max_len = int(self.config.model.text_max_len)
        self.dim = int(self.config.model.text_d_model)
        self.batch_size = int(batch_size)
        model = evaluator_model.model_from_config(self.config)
        self._fn = jax.jit(lambda p, t: model.apply({"params": p}, t, method="encode_text_roles"))

    def encode_columns(self, columns: Sequence[Sequence[str]], progress: bool = False, desc: str = "embed") -> list[np.ndarray]:
        """Three caption lists (left, right, relation; any lengths) -> three (N_role, E) arrays.

        Each role's captions are tokenised once and sorted by length; a batch row holds the
        i-th shortest caption of every role, and a batch is cut to its longest caption
        (rounded up to a multiple of 8, so few shapes compile). Padding is masked, so the
        embeddings equal those of captions padded to `text_max_len`."""
        import jax.numpy as jnp
        from tqdm.auto import tqdm

        roles = len(columns)
        ids = [[row[: self.max_len] for row in self.tokenizer.encode([str(c) for c in col])] for col in columns]
        order = [np.argsort([len(row) for row in role_ids], kind="stable") for role_ids in ids]
        n = max((len(c) for c in columns), default=0)
        out = [np.zeros((len(c), self.dim), np.float32) for c in columns]
        bar = tqdm(total=sum(len(c) for c in columns), desc=desc, unit="caption", disable=not progress,
                   dynamic_ncols=True)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            picks = [order[r][start:stop] for r in range(roles)]
            longest = max((len(ids[r][i]) for r in range(roles) for i in picks[r]), default=1)
            length = min(self.max_len, max(8, -(-longest // 8) * 8))
            tokens = np.zeros((self.batch_size, roles, length), np.int32)
            for r in range(roles):
                for j, i in enumerate(picks[r]):
                    tokens[j, r, : len(ids[r][i])] = ids[r][i]
            batch = {}
            for r, role in enumerate(tokenizer_lib.ROLES[:roles]):
                batch[f"tokens_{role}"] = jnp.asarray(tokens[:, r])
                batch[f"tokens_{role}_mask"] = jnp.asarray((tokens[:, r] != tokenizer_lib.PAD_ID).astype(np.float32))
            emb = np.asarray(self._fn(self.params, batch))
            for r in range(roles):
                out[r][picks[r]] = emb[: len(picks[r]), r]
            bar.update(sum(len(p) for p in picks))
        bar.close()
        return out


def dataset_captions(data_dir: str) -> dict[str, list[str]]:
    """Distinct captions per role over every split of `data_dir`, sorted."""
    from handx_jax.data import store

    keys = {"left": "left_annotation", "right": "right_annotation", "relation": "interaction_annotation"}
    found = {role: set() for role in tokenizer_lib.ROLES}
    splits = 0
    for split in SPLITS:
        try:
            path = store.find_split(data_dir, split)
        except FileNotFoundError:
            continue
        splits += 1
        for name, clip in store.load_any(path).items():
            for role, key in keys.items():
                found[role].update(str(c) for c in clip.get(key, ()))
    if not splits:
        raise FileNotFoundError(f"{data_dir}: no split ({', '.join(SPLITS)}) to embed captions of")
    return {role: sorted(v) for role, v in found.items()}


def embed_dataset(tower_dir: str, data_dir: str, *, batch_size: int = 512, progress: bool = True) -> str:
    """Write (or complete) `DIR/text_embeddings/<key>.npz` with every distinct caption of
    every split; captions already in the file are not embedded again. Returns its path."""
    identity = tower_identity(tower_dir, data_dir)
    path = embeddings_path(data_dir, identity)
    wanted = dataset_captions(data_dir)
    existing = None
    if os.path.isfile(path):
        existing = tokenizer_lib.load_text_embeddings(path)
        check_table(existing, identity.key)
        todo = {role: [c for c in wanted[role] if c not in existing.rows[role]] for role in tokenizer_lib.ROLES}
        if not any(todo.values()):
            return path
    else:
        todo = wanted
    encoder = TowerEncoder(tower_dir, batch_size=batch_size)
    columns = [todo[role] for role in tokenizer_lib.ROLES]
    if progress:
        print(f"embedding {sum(map(len, columns))} distinct captions with text tower {identity.tower_dir} "
              f"(step {identity.tower_step}) -> {path}", file=sys.stderr)
    new = encoder.encode_columns(columns, progress=progress)
    per_role = {}
    for r, role in enumerate(tokenizer_lib.ROLES):
        captions, emb = list(todo[role]), new[r]
        if existing is not None:
            old_caps = sorted(existing.rows[role], key=existing.rows[role].get)
            captions = old_caps + captions
            emb = np.concatenate([existing.matrices[role], emb])
        per_role[role] = (captions, emb)
    meta = {**identity.meta(), "dim": encoder.dim, "text_max_len": encoder.max_len}
    return tokenizer_lib.save_text_embeddings(path, per_role, meta)


# ---------------------------------------------------------------- generator configs --


def uses_tower(config) -> bool:
    return str(config.model.get("text", "")) == "tower"


def prepare_run(config, *, train_missing: bool = True) -> tokenizer_lib.TextEmbeddingTable:
    """Make a generator config with `model.text = "tower"` ready to train: the tower (trained
    from `model.text_tower_config` when missing and `train_missing`), the dataset's caption
    embeddings, and `model.text_embeddings_path` / `model.text_key` filled in. Returns the
    embeddings table, read once."""
    import jax

    from handx_jax import configlib
    from handx_jax.data import store

    data_dir = store.config_data_dir(config)
    tower_dir = tower_dir_of(config)
    if not has_checkpoint(tower_dir):
        spec = str(config.model.get("text_tower_config", ""))
        if not train_missing or not spec or jax.process_count() > 1:
            raise FileNotFoundError(
                f"no trained text tower in {tower_dir}: run `handx text tower --data {data_dir} --workdir {tower_dir}` "
                "first (a sweep does this in its shared stage)")
        print(f"text tower {tower_dir} is missing: training it from {spec} (once per dataset)", file=sys.stderr)
        train_tower(configlib.load_config(spec), tower_dir, data_dir)
    path = embed_dataset(tower_dir, data_dir, progress=True)
    table = tokenizer_lib.load_text_embeddings(path)
    table_dim = table.dim
    want = int(config.model.text_embed_dim)
    if table_dim != want:
        raise ValueError(f"{path} holds {table_dim}-wide caption embeddings but config.model.text_embed_dim is {want}; "
                         f"set --config.model.text_embed_dim={table_dim}")
    key = tower_identity(tower_dir, data_dir).key
    recorded = str(config.model.get("text_key", "") or "")
    if recorded and recorded != key:
        raise StaleTextEmbeddings(f"this run was made with text tower/tokenizer {recorded}, but {tower_dir} now is {key}")
    with config.ignore_type():
        config.model.text_tower = tower_dir
        config.model.text_embeddings_path = path
        config.model.text_key = key
    return table


class CaptionEmbedder:
    """Caption triples -> (N, 3, E) for a trained run: its embeddings file (checked against the
    run's `model.text_key`), and its tower for captions the file lacks."""

    def __init__(self, config):
        self.config = config
        self.key = str(config.model.get("text_key", "") or "")
        self.table = tokenizer_lib.load_text_embeddings(str(config.model.text_embeddings_path))
        if self.key:
            check_table(self.table, self.key)
        self._encoder = None

    def _tower(self) -> TowerEncoder:
        if self._encoder is None:
            tower_dir = str(self.config.model.get("text_tower", "") or self.table.meta.get("tower_dir", ""))
            if not tower_dir or not has_checkpoint(tower_dir):
                raise FileNotFoundError(f"captions missing from {self.table.path} need the text tower, "
                                        f"which is not at {tower_dir or '(unrecorded)'}")
            found = tower_identity(tower_dir).key
            if self.key and found != self.key:
                raise StaleTextEmbeddings(f"text tower {tower_dir} is now {found}, not {self.key} that this run "
                                          "was trained with: its embeddings of new prompts would not match")
            self._encoder = TowerEncoder(tower_dir, batch_size=64)
        return self._encoder

    def __call__(self, texts: Sequence[Sequence[str]]) -> np.ndarray:
        missing = self.table.missing(texts)
        extra: dict[tuple[str, str], np.ndarray] = {}
        if missing:
            columns = [[c for role, c in missing if role == r] for r in tokenizer_lib.ROLES]
            embedded = self._tower().encode_columns(columns)
            for r, role in enumerate(tokenizer_lib.ROLES):
                extra.update({(role, c): embedded[r][i] for i, c in enumerate(columns[r])})
        out = np.zeros((len(texts), len(tokenizer_lib.ROLES), self.table.dim), np.float32)
        for i, triple in enumerate(texts):
            for r, role in enumerate(tokenizer_lib.ROLES):
                text = str(triple[r])
                out[i, r] = extra[(role, text)] if (role, text) in extra else \
                    self.table.matrices[role][self.table.rows[role][text]]
        return out
