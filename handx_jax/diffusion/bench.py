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


def sampling_timer(task, params, *, batch_size: int = 64, steps: int = 50, guidance: float = 2.5):
    """`run(seed)` -> wall seconds of one guided DDIM batch (the first call also compiles);
    raises FloatingPointError on NaN/Inf samples."""
    from handx_jax.diffusion import sampling

    text = example_text(task, batch_size)

    def run(seed: int) -> float:
        t = time.perf_counter()
        out = sampling.sample(task, params, text, steps=steps, guidance=guidance, seed=seed)
        out.block_until_ready()
        seconds = time.perf_counter() - t
        if not np.all(np.isfinite(np.asarray(out))):
            raise FloatingPointError("sampling produced NaN/Inf")
        return seconds

    return run


def time_sampling(task, params, *, batch_size: int = 64, steps: int = 50, guidance: float = 2.5,
                  repeats: int = 1) -> tuple[float, float]:
    """(compile+first-run seconds, best run seconds) of one guided DDIM batch."""
    run = sampling_timer(task, params, batch_size=batch_size, steps=steps, guidance=guidance)
    first = run(0)
    return first, min(run(r + 1) for r in range(repeats))


def sampling_throughput(config, params, *, batch_size: int = 64, steps: int = 50, guidance: float = 2.5) -> float:
    """Samples/s of guided DDIM sampling at `batch_size` (compile excluded)."""
    from handx_jax.diffusion.task import DiffusionTask

    _, seconds = time_sampling(DiffusionTask(config), params, batch_size=batch_size, steps=steps, guidance=guidance)
    return batch_size / seconds
