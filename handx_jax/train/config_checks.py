"""Checks of a training config before a run starts: every bad field named, in one error.

`check_train_config(config)` is called by the trainer before it writes anything, so a
typo such as `--config.train.steps=0` or `--config.model.num_layers=-1` stops the run at
once with a one-line message instead of a silent no-op or a deep library error.
"""

from __future__ import annotations

import math
import re
from typing import Any

from handx_jax.configlib import UserError


class ConfigError(UserError):
    """A training config with fields out of range; the message names every one."""


# config.train: (field, lowest allowed value, highest allowed value or None, integer?)
TRAIN_RANGES = (
    ("steps", 1, None, True),
    ("batch_size", 1, None, True),
    ("ckpt_every", 1, None, True),
    ("log_every", 1, None, True),
    ("keep_checkpoints", 1, None, True),
    ("eval_every", -1, None, True),  # -1: never
    ("eval_batches", 1, None, True),
    ("warmup_steps", 0, None, True),
    ("lr", 0.0, None, False),
    ("weight_decay", 0.0, None, False),
    ("grad_clip", 0.0, None, False),
    ("ema_decay", 0.0, 1.0, False),
    ("warmup_fraction", 0.0, 1.0, False),
    ("min_lr_ratio", 0.0, 1.0, False),
)
# Integer model fields that count or size something (layers, heads, widths, vocabularies).
_MODEL_COUNT = re.compile(r"(^num_|(^|_)(layers|heads|d_model|dim|size|len|width|depth|codebook|"
                          r"tokens|downsample)$)")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_problem(name: str, value: Any, low, high, integer: bool) -> str | None:
    kind = "an integer" if integer else "a number"
    if not _number(value) or (integer and not float(value).is_integer()):
        return f"{name}={value!r} must be {kind}"
    if not math.isfinite(value):
        return f"{name}={value} must be finite"
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        return f"{name}={value} must be {bound}"
    return None


def problems(config: Any) -> list[str]:
    """Every out-of-range field of a task config (empty when it may run)."""
    found = []
    train = config.get("train") or {}
    for field, low, high, integer in TRAIN_RANGES:
        if field in train and train[field] is not None:
            found.append(_range_problem(f"train.{field}", train[field], low, high, integer))
    model = config.get("model") or {}
    for field, value in model.items():
        if isinstance(value, int) and not isinstance(value, bool) and _MODEL_COUNT.search(field):
            found.append(_range_problem(f"model.{field}", value, 1, None, True))
        elif "dropout" in field and _number(value):
            found.append(_range_problem(f"model.{field}", value, 0.0, 1.0, False))
    for width, heads in (("d_model", "num_heads"), ("text_d_model", "text_heads")):
        w, h = model.get(width), model.get(heads)
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 and w % h:
            found.append(f"model.{width}={w} is not divisible by model.{heads}={h}")
    data = config.get("data") or {}
    if data.get("ratio") is not None:
        ratio = data["ratio"]
        if not _number(ratio) or not 0.0 < ratio <= 1.0:
            found.append(f"data.ratio={ratio!r} must be in (0, 1]")
    if data.get("seq_len") is not None:
        found.append(_range_problem("data.seq_len", data["seq_len"], 1, None, True))
    mesh = config.get("mesh") or {}
    for axis, size in mesh.items():
        if not (isinstance(size, int) and (size == -1 or size >= 1)):
            found.append(f"mesh.{axis}={size!r} must be -1 (fill) or >= 1")
    return [p for p in found if p]


def check_train_config(config: Any) -> None:
    """Raise ConfigError naming every bad field; nothing is written before this passes."""
    bad = problems(config)
    if bad:
        raise ConfigError("config refused: " + "; ".join(bad))
