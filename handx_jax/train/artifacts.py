"""A run's own copies of the artifacts it depends on, with their hashes.

At its start a run copies its dataset's tokenizer (`spm.model`) and normalisation statistics
(`stats_<representation>.npz`) into `<workdir>/artifacts/` and records in
`<workdir>/artifacts/artifacts.json` each file's sha256, size and source, plus its text
embeddings' identity (`model.text_key`, the embeddings file and its sha256). A resume whose
dataset files no longer match the recorded hashes is refused (`ArtifactChanged`), and the
sampler reads the run's copies, so retraining a dataset's tokenizer or recomputing its
statistics cannot silently change a finished run.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

ARTIFACT_DIR = "artifacts"
RECORD = "artifacts.json"
TOKENIZER = "spm.model"


class ArtifactChanged(ValueError):
    """A dependency of a run differs from the copy the run recorded; names file and hashes."""


def sha256_file(path: str) -> str:
    from handx_jax.data.manifest import sha256_file as sha

    return sha(path)


def artifact_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), ARTIFACT_DIR)


def read_record(workdir: str) -> dict:
    path = os.path.join(artifact_dir(workdir), RECORD)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def dependencies(config: Any) -> dict[str, str]:
    """name -> source path of the files a run of `config` reads from its dataset (existing ones)."""
    data_dir = (config.get("data") or {}).get("dir") if "data" in config else None
    if not data_dir:
        return {}
    from handx_jax.data import normalization
    from handx_jax.text import tokenizer as tokenizer_lib

    representation = str(config.data.get("representation", "joint_pos"))
    found = {TOKENIZER: tokenizer_lib.tokenizer_path(str(data_dir)),
             f"stats_{representation}.npz": normalization.stats_path(str(data_dir), representation)}
    return {name: path for name, path in found.items() if os.path.isfile(path)}


def text_identity(config: Any) -> dict:
    """The text embeddings a run is conditioned on: key, file and the file's sha256."""
    model = config.get("model") or {}
    path = str(model.get("text_embeddings_path", "") or "")
    out = {"text_key": str(model.get("text_key", "") or "")}
    if path and os.path.isfile(path):
        out.update(text_embeddings_path=os.path.abspath(path), sha256=sha256_file(path))
    return out if out["text_key"] or len(out) > 1 else {}


def snapshot(workdir: str, config: Any) -> dict:
    """Copy the run's dependencies into `<workdir>/artifacts/` (first start), or check them
    against the recorded hashes (resume: ArtifactChanged when a dataset file changed)."""
    from handx_jax import atomic

    folder = artifact_dir(workdir)
    record = read_record(workdir)
    files = dict(record.get("files", {}))
    for name, source in dependencies(config).items():
        digest = sha256_file(source)
        if name in files:
            if files[name]["sha256"] != digest:
                raise ArtifactChanged(
                    f"{source} changed since {workdir} started (sha256 {digest[:12]}, the run's copy "
                    f"{os.path.join(folder, name)} has {files[name]['sha256'][:12]}): resuming would train on "
                    f"other inputs; restore the file from the run's copy or use a new --workdir")
            continue
        os.makedirs(folder, exist_ok=True)
        fd, tmp = atomic.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(source, tmp)
        os.replace(tmp, os.path.join(folder, name))
        files[name] = {"sha256": digest, "bytes": os.path.getsize(source), "source": os.path.abspath(source)}
    text = record.get("text") or text_identity(config)
    new = {"files": files, **({"text": text} if text else {})}
    if new != record and (files or text):
        os.makedirs(folder, exist_ok=True)
        from handx_jax.train.metrics_log import write_json_atomic

        write_json_atomic(os.path.join(folder, RECORD), new)
    return new


def run_file(workdir: str, name: str) -> str | None:
    """The run's checked copy of `name` (None when the run has none); ArtifactChanged when the
    copy no longer matches its recorded hash."""
    entry = read_record(workdir).get("files", {}).get(name)
    path = os.path.join(artifact_dir(workdir), name)
    if entry is None or not os.path.isfile(path):
        return None
    if sha256_file(path) != entry["sha256"]:
        raise ArtifactChanged(f"{path}: sha256 differs from {os.path.join(artifact_dir(workdir), RECORD)}")
    return path


def check_sources(workdir: str, names: tuple[str, ...] = (TOKENIZER,)) -> None:
    """ArtifactChanged when a dataset file the run still reads at its source (the tokenizer of
    a run whose text encoder tokenises prompts) differs from the run's recorded copy."""
    for name, entry in read_record(workdir).get("files", {}).items():
        source = entry.get("source", "")
        if name in names and os.path.isfile(source) and sha256_file(source) != entry["sha256"]:
            raise ArtifactChanged(
                f"{source} changed since {workdir} was trained (the run's copy {os.path.join(artifact_dir(workdir), name)} "
                f"has sha256 {entry['sha256'][:12]}): copy the run's file back or retrain")


def run_stats(workdir: str, config: Any):
    """The run's own normalisation statistics (None for a run without a copy)."""
    from handx_jax.data import normalization

    representation = str(config.data.get("representation", "joint_pos"))
    path = run_file(workdir, f"stats_{representation}.npz")
    return normalization.load_stats(path, representation) if path else None


def identity(workdir: str) -> dict:
    """What identifies a run for the records of its consumers (an evaluation names the
    evaluator that scored it): directory, newest checkpoint step, and its artifacts' hashes."""
    from handx_jax.train.checkpoint import all_steps

    workdir = os.path.abspath(workdir)
    record = read_record(workdir)
    steps = all_steps(workdir)
    out = {"dir": workdir, "step": steps[-1] if steps else None,
           **{f"{name}_sha256": entry["sha256"] for name, entry in sorted(record.get("files", {}).items())}}
    for name in (TOKENIZER, "stats_joint_pos.npz"):  # assets copied beside the run (evaluator, tower)
        path = os.path.join(workdir, name)
        if f"{name}_sha256" not in out and os.path.isfile(path):
            out[f"{name}_sha256"] = sha256_file(path)
    return out
