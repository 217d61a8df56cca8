"""Annotate a clip file: features -> events -> reasoner -> captions, written atomically.

No clip is silently dropped and none is written with partial captions: a clip whose
reasoner fails is listed in the report, and unless `allow_partial` is set the output file
is not written at all (the LLM cache keeps every answered clip, so a rerun asks only for
the rest). Output goes to the HandX release format, our `.clips.npz`, or both.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import multiprocessing
import os
import sys
from collections.abc import Callable

from handx_jax import atomic

import numpy as np
from tqdm import tqdm

from handx_jax.annotate import blas
from handx_jax.annotate import events as events_lib
from handx_jax.annotate import features as features_lib
from handx_jax.annotate import reasoner_rules
from handx_jax.annotate.reasoner_llm import LLMConfig, LLMError, LLMReasoner

BACKENDS = ("rules", "llm")


def _group_by_length(clips: dict[str, dict], source: str) -> dict[int, list[str]]:
    """Clip names by length, after checking every clip's motion (errors name the clip)."""
    by_length: dict[int, list[str]] = {}
    for name, clip in clips.items():
        motion = np.asarray(clip.get("motion"))
        if motion.ndim != 4 or motion.shape[1:] != (2, 21, 3) or motion.shape[0] < 2:
            raise features_lib.FeatureError(
                f"{source}: clip {name!r}: motion shape {motion.shape}, expected (T >= 2, 2, "
                "21, 3)")
        if not np.isfinite(motion).all():
            frame = int(np.flatnonzero(~np.isfinite(motion).reshape(motion.shape[0], -1)
                                       .all(axis=1))[0])
            raise features_lib.FeatureError(
                f"{source}: clip {name!r}: non-finite joint positions (first at frame {frame})")
        by_length.setdefault(motion.shape[0], []).append(name)
    return by_length


def _batches(clips: dict[str, dict], batch_size: int, source: str) -> list[list[str]]:
    """Clip names in batches of equal length."""
    return [names[lo:lo + batch_size] for names in _group_by_length(clips, source).values()
            for lo in range(0, len(names), batch_size)]


def _motion(clips: dict[str, dict], names: list[str]) -> np.ndarray:
    return np.stack([np.asarray(clips[n]["motion"], np.float32) for n in names])


def _chunk_docs(names: list[str], motion: np.ndarray, source: str) -> list[dict]:
    try:  # palm distances that cannot change an event are skipped (exact=False)
        feats = features_lib.extract_features(motion, exact=False)
    except features_lib.FeatureError as err:
        raise features_lib.FeatureError(f"{source}: clips {names[:3]}...: {err}") from err
    return events_lib.batch_events(feats)


# The clips forked pool workers read their batches from (inherited, never pickled).
_FORKED_CLIPS: dict[str, dict] | None = None


def _worker_init() -> None:
    gc.disable()  # see annotate_file
    blas.one_thread()  # one core per worker: no BLAS threads spinning against the other


def _rules_chunk(job) -> tuple[list[dict] | None, list[list[dict]]]:
    """Event JSON (when asked for) and rules captions of one batch (a process-pool task)."""
    names, motion, seed, source, want_docs = job
    if motion is None:
        motion = _motion(_FORKED_CLIPS, names)
    docs = _chunk_docs(names, motion, source)
    captions = [reasoner_rules.describe(d, seed=seed, name=n) for d, n in zip(docs, names)]
    return (docs if want_docs else None), captions


def clip_event_docs(clips: dict[str, dict], batch_size: int = 512,
                    progress: bool = True, source: str = "clips") -> dict[str, dict]:
    """Event JSON of every clip; clips of equal length are measured together in batches."""
    docs: dict[str, dict] = {}
    bar = tqdm(total=len(clips), desc="events", unit="clip", disable=not progress)
    for chunk in _batches(clips, batch_size, source):
        docs.update(zip(chunk, _chunk_docs(chunk, _motion(clips, chunk), source)))
        bar.update(len(chunk))
    bar.close()
    return {name: docs[name] for name in clips}


def rules_docs_and_captions(clips: dict[str, dict], seed: int = 0, workers: int = 2,
                            batch_size: int = 256, progress: bool = True,
                            source: str = "clips", docs: bool = True,
                            check: Callable[[], None] | None = None
                            ) -> tuple[dict[str, dict] | None, dict[str, list]]:
    """Event JSON and rules captions of every clip, batches spread over `workers` processes
    (features, events and captions of a batch in one task). Forked workers read the motion
    from this process's memory, so only captions travel back (and the event JSON, unless
    `docs=False`: then None is returned in its place).

    `check` (input validation) runs in this process while the workers compute, and first
    when the clips cannot even be batched; what it raises cancels the batches not started.
    """
    global _FORKED_CLIPS
    out_docs: dict[str, dict] = {}
    captions: dict[str, list] = {}
    try:
        batches = _batches(clips, batch_size, source)
    except features_lib.FeatureError:
        if check is not None:
            check()  # its message, naming the first bad clip, as when it ran first
        raise
    # fork is cheapest, but not once JAX (multithreaded) is loaded in this process
    fork = "fork" in multiprocessing.get_all_start_methods() and "jax" not in sys.modules
    context = multiprocessing.get_context("fork" if fork else "spawn")
    jobs = [(chunk, None if fork else _motion(clips, chunk), seed, source, docs)
            for chunk in batches]
    bar = tqdm(total=len(clips), desc="events + captions", unit="clip", disable=not progress)
    _FORKED_CLIPS = clips if fork else None
    try:
        with concurrent.futures.ProcessPoolExecutor(max(1, workers), mp_context=context,
                                                    initializer=_worker_init) as pool:
            results = pool.map(_rules_chunk, jobs)
            if check is not None:
                try:
                    check()
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
            for chunk, (chunk_docs, chunk_caps) in zip(batches, results):
                if docs:
                    out_docs.update(zip(chunk, chunk_docs))
                captions.update(zip(chunk, chunk_caps))
                bar.update(len(chunk))
    finally:
        _FORKED_CLIPS = None
    bar.close()
    return ({n: out_docs[n] for n in clips} if docs else None,
            {n: captions[n] for n in clips})


def _atomic_write_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = atomic.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def output_paths(out: str, fmt: str = "auto") -> dict[str, str]:
    """Where each format goes: `.clips.npz` -> ours; other names -> HandX (+ ours if both)."""
    from handx_jax.data import store
    is_ours = out.endswith(store.CLIPS_SUFFIX)
    stem = out[: -len(store.CLIPS_SUFFIX)] if is_ours else os.path.splitext(out)[0]
    if fmt == "auto":
        fmt = "clips" if is_ours else "both"
    paths = {}
    if fmt in ("handx", "both"):
        paths["handx"] = out if not is_ours else stem + ".npz"
    if fmt in ("clips", "both"):
        paths["clips"] = out if is_ours else stem + store.CLIPS_SUFFIX
    if not paths:
        raise ValueError(f"unknown output format {fmt!r}; use auto, handx, clips or both")
    return paths


def caption_clips(docs: dict[str, dict], backend: str = "rules", seed: int = 0,
                  concurrency: int = 4, cache: str | None = None, progress: bool = True,
                  llm_config: LLMConfig | None = None, template: str | None = None):
    """Triplets per clip and failures {clip: error}; plus LLM request/cache counts."""
    captions: dict[str, list] = {}
    failed: dict[str, str] = {}
    stats = {"requests": 0, "cache_hits": 0}
    if backend == "rules":
        for name, doc in tqdm(docs.items(), desc="captions", unit="clip", disable=not progress):
            captions[name] = reasoner_rules.describe(doc, seed=seed, name=name)
        return captions, failed, stats
    if backend != "llm":
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    reasoner = LLMReasoner(llm_config or LLMConfig(seed=seed), cache_dir=cache, template=template)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(reasoner.describe, doc): name for name, doc in docs.items()}
        bar = tqdm(total=len(futures), desc="captions (llm)", unit="clip", disable=not progress)
        try:
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    captions[name] = future.result()
                except Exception as err:  # any failure is reported per clip, never fatal
                    failed[name] = f"{type(err).__name__}: {err}" if not isinstance(
                        err, LLMError) else str(err)
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            bar.close()
    stats = {"requests": reasoner.client.requests, "cache_hits": reasoner.cache_hits}
    return {n: captions[n] for n in docs if n in captions}, failed, stats


def annotate_file(src: str, out: str, backend: str = "rules", seed: int = 0, *,
                  fmt: str = "auto", concurrency: int = 4, cache: str | None = None,
                  allow_partial: bool = False, events_out: str | None = None,
                  progress: bool = True, llm_config: LLMConfig | None = None,
                  template: str | None = None, workers: int = 1, **llm_kwargs) -> dict:
    """Replace the captions of every clip in `src` with the reasoner's; write `out`.

    Returns a report dict: counts, failed clips with reasons, LLM requests and cache hits,
    and the files written. `llm_kwargs` are LLMConfig fields (url, model, key_env, ...).
    """
    from handx_jax.data import store
    clips = store.load_any(src)
    # Events and captions create millions of small dicts and strings that never form cycles;
    # the cyclic collector would rescan all of them again and again.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _annotate_clips(clips, src, out, backend, seed, fmt=fmt, concurrency=concurrency,
                               cache=cache, allow_partial=allow_partial, events_out=events_out,
                               progress=progress, llm_config=llm_config, template=template,
                               workers=workers, **llm_kwargs)
    finally:
        if gc_was_enabled:
            gc.enable()


def _annotate_clips(clips: dict, src: str, out: str, backend: str, seed: int, *, fmt: str,
                    concurrency: int, cache: str | None, allow_partial: bool,
                    events_out: str | None, progress: bool, llm_config: LLMConfig | None,
                    template: str | None, workers: int = 1, **llm_kwargs) -> dict:
    from handx_jax.data import handx_format, store, validate

    def check() -> None:  # e.g. millimetres: the same check as `handx data validate`
        validate.refuse_bad_motion(clips, src)

    rules_parallel = backend == "rules" and workers > 1 and len(clips) > 256
    if rules_parallel:  # the input is checked while the workers start on it
        docs, ready = rules_docs_and_captions(clips, seed, workers, progress=progress, source=src,
                                              docs=bool(events_out), check=check)
    else:
        check()
        docs = clip_event_docs(clips, progress=progress, source=src)
    if events_out:
        _atomic_write_text(events_out, "".join(
            json.dumps({"clip": n, "events": d}) + "\n" for n, d in docs.items()))
    if backend == "llm" and llm_config is None:
        llm_config = LLMConfig(seed=seed, **llm_kwargs)
    if rules_parallel:
        captions, failed, stats = ready, {}, {"requests": 0, "cache_hits": 0}
    else:
        captions, failed, stats = caption_clips(docs, backend, seed, concurrency, cache, progress,
                                                llm_config, template)
    report = {"source": src, "backend": backend, "clips": len(clips),
              "annotated": len(captions), "failed": [{"clip": n, "error": e}
                                                     for n, e in failed.items()],
              **stats, "written": []}
    if failed and not allow_partial:
        report["note"] = ("output not written: some clips failed; rerun to retry them "
                          "(answered clips come from the cache)")
        return report
    annotated = {}
    for name, clip in clips.items():
        if name not in captions:
            continue
        triplets = captions[name]
        new = dict(clip)
        new["left_annotation"] = [t["left"] for t in triplets]
        new["right_annotation"] = [t["right"] for t in triplets]
        new["interaction_annotation"] = [t["two_hands_relation"] for t in triplets]
        annotated[name] = new
    paths = output_paths(out, fmt)
    if "handx" in paths:
        handx_format.save_handx(paths["handx"], annotated)
    if "clips" in paths:
        store.save_clips(paths["clips"], annotated)
    report["written"] = list(paths.values())
    return report
