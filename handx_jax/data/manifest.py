"""Completion manifests: a dataset directory is complete only when its manifest says so.

A writer (synthetic generation, a build) removes `manifest.json` first, writes its files,
then writes the manifest last (atomically) with every file's size and sha256 and the clip
counts. A reader trusts only the manifest: files left by an interrupted writer, with no
manifest or with sizes that disagree with it, are not a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os

MANIFEST_NAME = "manifest.json"
FORMAT = "handx-dataset-manifest-v1"


def manifest_path(directory: str) -> str:
    return os.path.join(os.fspath(directory), MANIFEST_NAME)


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def invalidate(directory: str) -> None:
    """Mark `directory` incomplete before (re)writing it."""
    try:
        os.remove(manifest_path(directory))
    except FileNotFoundError:
        pass


def write_manifest(directory: str, files: list[str], counts: dict, info: dict | None = None) -> str:
    """Record `files` (paths inside `directory`) with sizes and hashes; call it last."""
    from handx_jax import atomic

    directory = os.fspath(directory)
    entries = {}
    for path in files:
        name = os.path.relpath(os.path.abspath(path), os.path.abspath(directory))
        full = os.path.join(directory, name)
        entries[name] = {"bytes": os.path.getsize(full), "sha256": sha256_file(full)}
    record = {"format": FORMAT, "complete": True, "files": entries,
              "counts": dict(counts), "info": dict(info or {})}
    fd, tmp = atomic.mkstemp(dir=directory, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, manifest_path(directory))
    return manifest_path(directory)


def read_manifest(directory: str) -> dict | None:
    try:
        with open(manifest_path(directory)) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def problems(directory: str, *, check_hashes: bool = False) -> list[str]:
    """Why `directory` is not a complete dataset (empty when it is)."""
    record = read_manifest(directory)
    if record is None or not record.get("complete"):
        return [f"{manifest_path(directory)}: missing or unreadable (the writer did not finish)"]
    out = []
    for name, entry in sorted(record.get("files", {}).items()):
        full = os.path.join(os.fspath(directory), name)
        if not os.path.isfile(full):
            out.append(f"{full}: listed in the manifest but missing")
        elif os.path.getsize(full) != entry.get("bytes"):
            out.append(f"{full}: {os.path.getsize(full)} bytes, the manifest says {entry.get('bytes')}")
        elif check_hashes and sha256_file(full) != entry.get("sha256"):
            out.append(f"{full}: sha256 differs from the manifest")
    return out


def is_complete(directory: str, *, check_hashes: bool = False) -> bool:
    return not problems(directory, check_hashes=check_hashes)
