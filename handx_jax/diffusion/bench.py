"""Sampling-throughput hook for tools/bench_train.py (and tools/bench_sampling.py)."""

from __future__ import annotations

import time

import numpy as np


def example_text(task, batch_size: int, caption_tokens: int = 24, seed: int = 0) -> dict:
    """Random token batches of a typical caption length (speed does not depend on the words)."""
    rng = np.random.default_rng(seed)
    text = {k: v for k, v in task.dummy_batch(batch_size).items() if k.startswith("tokens") or k == "text_embedding"}
    for role in ("left", "right", "relation"):
        key = f"tokens_{role}"
        if key in text:
            tok = rng.integers(2, int(task.config.model.vocab_size), size=text[key].shape).astype(np.int32)
            tok[:, caption_tokens:] = 0
            text[key], text[key + "_mask"] = tok, (tok != 0).astype(np.float32)
    return text


def time_sampling(task, params, *, batch_size: int = 64, steps: int = 50, guidance: float = 2.5,
                  repeats: int = 1, first_seed: int | None = None) -> tuple[float, float]:
    """(compile+first-run seconds, best of `repeats` timed runs) of one guided DDIM batch.
    With `first_seed` the sampler is taken as compiled: no untimed first run (its seconds 0)
    and the timed runs use seeds from `first_seed` on."""
    from handx_jax.diffusion import sampling

    text = example_text(task, batch_size)
    run = lambda seed: sampling.sample(task, params, text, steps=steps, guidance=guidance, seed=seed)
    first = 0.0
    if first_seed is None:
        t = time.perf_counter()
        out = run(0)
        out.block_until_ready()
        first = time.perf_counter() - t
    best = float("inf")
    start = 1 if first_seed is None else int(first_seed)
    for r in range(repeats):
        t = time.perf_counter()
        out = run(start + r)
        out.block_until_ready()
        best = min(best, time.perf_counter() - t)
    if not np.all(np.isfinite(np.asarray(out))):
        raise FloatingPointError("sampling produced NaN/Inf")
    return first, best


def sampling_throughput(config, params, *, batch_size: int = 64, steps: int = 50, guidance: float = 2.5) -> float:
    """Samples/s of guided DDIM sampling at `batch_size` (compile excluded)."""
    from handx_jax.diffusion.task import DiffusionTask

    _, seconds = time_sampling(DiffusionTask(config), params, batch_size=batch_size, steps=steps, guidance=guidance)
    return batch_size / seconds
