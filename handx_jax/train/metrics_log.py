"""Run-directory logs: `config.json` and `metrics.jsonl` (one JSON object per logged step)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from handx_jax.train.checkpoint import config_to_dict


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def write_config(workdir: str, config: Any) -> str:
    path = os.path.join(workdir, "config.json")
    write_json_atomic(path, config_to_dict(config))
    return path


def _clean(value: Any) -> Any:
    """Plain Python numbers for JSON; non-finite floats become strings ("nan", "inf")."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsWriter:
    """Appends one JSON line per logged step to `<workdir>/metrics.jsonl` (flushed each line)."""

    def __init__(self, workdir: str, resume_step: int | None = None, enabled: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        if enabled and resume_step is not None:
            truncate_after(self.path, resume_step)
        self._file = open(self.path, "a") if enabled else None

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def truncate_after(path: str, step: int) -> None:
    """Drop lines logged after `step` (a resumed run repeats them), atomically."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError):
                continue  # a line cut short by a kill
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
