"""FLOP accounting: analytic counts for transformer training, XLA's own count, matmul peak.

Convention: a multiply-add is 2 FLOPs; training = forward + backward = 3x the forward
matmul FLOPs (the backward computes gradients for both activations and weights), except
that the first layer needs no gradient with respect to its input data.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp


def dense_flops(tokens: float, d_in: float, d_out: float) -> float:
    """Forward FLOPs of a dense layer applied to `tokens` rows."""
    return 2.0 * tokens * d_in * d_out


def attention_flops(seq_len: float, d_model: float, kv_len: float | None = None) -> float:
    """Forward FLOPs of scores (q.k) and mixing (p.v) for one sequence, all heads."""
    kv_len = seq_len if kv_len is None else kv_len
    return 2.0 * 2.0 * seq_len * kv_len * d_model


def transformer_layer_forward_flops(seq_len: float, d_model: float, ff: float,
                                    kv_len: float | None = None) -> float:
    """Self-attention (qkv, scores, mixing, output projection) plus a two-matrix MLP."""
    return (dense_flops(seq_len, d_model, 3 * d_model) + attention_flops(seq_len, d_model, kv_len)
            + dense_flops(seq_len, d_model, d_model) + 2 * dense_flops(seq_len, d_model, ff))


def transformer_train_flops(*, seq_len: int, d_model: int, layers: int, ff: int,
                            in_features: int, out_features: int, extra_forward: float = 0.0) -> float:
    """Analytic training FLOPs per example of a pre-norm encoder between two linear maps.

    `extra_forward` adds the forward FLOPs of any other matmuls inside the network (counted
    3x like the body); the stem counts 2x because the input data needs no gradient.
    """
    body = layers * transformer_layer_forward_flops(seq_len, d_model, ff)
    head = dense_flops(seq_len, d_model, out_features)
    stem = dense_flops(seq_len, in_features, d_model)
    return 3.0 * (body + head + extra_forward) + 2.0 * stem


def xla_flops(compiled: Any) -> float:
    """FLOPs XLA counts for a compiled computation (`jit(f).lower(...).compile()`)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def measure_matmul_peak(dtype=jnp.float32, n: int = 1536, repeats: int = 6) -> float:
    """Best-of-`repeats` FLOP/s of an n x n matmul on the default device (MFU denominator)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


def peak_flops(configured: float | None = None, dtype=jnp.float32, cache: bool = True) -> float:
    """Peak FLOP/s of the whole run: the configured value if positive, else a measured
    float32 matmul peak per device (cached per machine) times the devices that do not share
    silicon (fake CPU devices share the host's cores, so CPU counts once)."""
    if configured and float(configured) > 0:
        return float(configured)
    device = jax.devices()[0]
    key = f"{device.platform}:{getattr(device, 'device_kind', '')}:{os.cpu_count()}:{jnp.dtype(dtype).name}"
    path = os.path.join(os.environ.get("HANDX_CACHE", os.path.expanduser("~/.cache/handx_jax")),
                        "peak_flops.json")
    table = {}
    if cache and os.path.exists(path):
        try:
            with open(path) as f:
                table = json.load(f)
        except (OSError, ValueError):
            table = {}
    if key not in table:
        table[key] = measure_matmul_peak(dtype)
        if cache:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}.tmp{os.getpid()}"
                with open(tmp, "w") as f:
                    json.dump(table, f)
                os.replace(tmp, path)
            except OSError:
                pass
    devices = 1 if device.platform == "cpu" else jax.device_count()
    return float(table[key]) * devices
