"""Optimizer: AdamW with linear warmup + cosine decay and global-norm gradient clipping."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def make_schedule(train_config: Any) -> optax.Schedule:
    """Linear warmup from 0 to `lr`, then cosine to `lr * min_lr_ratio` at the run's last step.

    The warmup is `warmup_fraction` of the run when that is set (> 0), else `warmup_steps`;
    a fraction keeps the schedule's shape fixed when steps are derived from a compute budget.
    """
    lr = float(train_config.lr)
    steps = max(int(train_config.steps), 1)
    warmup = warmup_steps(train_config)
    final = lr * float(train_config.get("min_lr_ratio", 0.0))
    decay_steps = max(steps - warmup, 1)
    cosine = optax.cosine_decay_schedule(lr, decay_steps, alpha=final / lr if lr else 0.0)
    if warmup == 0:
        return cosine
    ramp = optax.linear_schedule(0.0, lr, warmup)
    return optax.join_schedules([ramp, cosine], [warmup])


def warmup_steps(train_config: Any) -> int:
    """Warmup length in steps: `warmup_fraction` x steps (rounded, at least 1) or `warmup_steps`."""
    steps = max(int(train_config.steps), 1)
    fraction = float(train_config.get("warmup_fraction", 0.0) or 0.0)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"train.warmup_fraction={fraction} must be in [0, 1)")
    if fraction > 0:
        return max(1, min(round(fraction * steps), steps - 1)) if steps > 1 else 0
    return min(int(train_config.get("warmup_steps", 0)), steps)


def decay_mask(params: Any) -> Any:
    """Weight decay on matrices only (not on biases, norms' scales or embeddings' 1-D vectors)."""
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(train_config: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer and its learning-rate schedule (the loop logs schedule(step))."""
    schedule = make_schedule(train_config)
    parts = []
    clip = float(train_config.get("grad_clip", 0.0) or 0.0)
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    parts.append(optax.adamw(
        schedule,
        b1=float(train_config.get("b1", 0.9)),
        b2=float(train_config.get("b2", 0.999)),
        eps=float(train_config.get("eps", 1e-8)),
        weight_decay=float(train_config.get("weight_decay", 0.0)),
        mask=decay_mask,
    ))
    return optax.chain(*parts), schedule


def ema_update(ema: Any, params: Any, decay: float | jax.Array) -> Any:
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf in the parameters' dtype."""
    return jax.tree_util.tree_map(lambda e, p: (e + (1.0 - decay) * (p - e)).astype(e.dtype), ema, params)
