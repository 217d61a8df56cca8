"""Evaluation driver: replications of the HumanML3D protocol plus HandX contact and physics.

For each of R replications (default 20), every evaluated test clip gets one of its K
caption triples drawn at random, the model generates one motion per triple (a fresh seed
per replication), and all metrics are computed; the ground-truth row uses the clips
themselves. MultiModality uses `mm_texts` texts with `mm_generations` generations each.
Every figure is reported as mean ± 1.96 std / sqrt(R).

`evaluate_run` is the `handx evaluate` entry: it writes `W/eval/metrics.json` and
`W/eval/table.md` (under `W/eval/step_<N>/` for an earlier checkpoint) and appends
`eval/<metric>` keys with the checkpoint step to `W/metrics.jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from handx_jax.eval import metrics, report

# generate(texts, num_per_text, seed) -> motion (len(texts) * num_per_text, T, 2, 21, 3), text-major.
GenerateFn = Callable[[Sequence[tuple], int, int], np.ndarray]


def clip_arrays(clips: dict, seq_len: int, source: str = "clips") -> tuple[list[str], np.ndarray, list[list[tuple]]]:
    """Names, motion (N, seq_len, 2, 21, 3) and per-clip caption triples of a clips dict.

    Clips longer than `seq_len` are cut to their first `seq_len` frames; shorter clips
    are an error naming the clip (the evaluator sees fixed-length windows).
    """
    names, motions, captions = [], [], []
    for name in sorted(clips):
        clip = clips[name]
        motion = np.asarray(clip["motion"], np.float32)
        if motion.ndim != 4 or motion.shape[1:] != (2, 21, 3):
            raise ValueError(f"{source}: clip {name!r} field 'motion' has shape {motion.shape}, expected (T, 2, 21, 3)")
        if motion.shape[0] < seq_len:
            raise ValueError(f"{source}: clip {name!r} has {motion.shape[0]} frames, fewer than {seq_len}")
        left, right, rel = (list(clip.get(k, ())) for k in ("left_annotation", "right_annotation", "interaction_annotation"))
        if not left or not (len(left) == len(right) == len(rel)):
            raise ValueError(f"{source}: clip {name!r} needs equally many left/right/interaction annotations, "
                             f"got {len(left)}/{len(right)}/{len(rel)}")
        names.append(name)
        motions.append(motion[:seq_len])
        captions.append([(str(a), str(b), str(c)) for a, b, c in zip(left, right, rel)])
    if not names:
        raise ValueError(f"{source}: no clips to evaluate")
    return names, np.stack(motions), captions


def draw_indices(captions: Sequence[Sequence[tuple]], rng: np.random.Generator) -> np.ndarray:
    """Which of its K annotations each clip uses (uniform), as indices."""
    return np.array([int(rng.integers(len(options))) for options in captions], np.int64)


class CaptionTable:
    """Every caption triple of a clip set, embedded once by the evaluator; a replication's
    draw (one index per clip) then looks its rows up instead of encoding again."""

    def __init__(self, evaluator, captions: Sequence[Sequence[tuple]]):
        self.captions = captions
        self.offsets = np.cumsum([0] + [len(options) for options in captions])[:-1]
        self.embeddings = evaluator.encode_text([triple for options in captions for triple in options])

    def draw(self, rng: np.random.Generator) -> tuple[list[tuple], np.ndarray]:
        """(texts, their evaluator embeddings) of one random draw."""
        idx = draw_indices(self.captions, rng)
        return [options[i] for options, i in zip(self.captions, idx)], self.embeddings[self.offsets + idx]


class StageTimes(dict):
    """Wall seconds per named stage, summed over its uses: `with times("sample"): ...`."""

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - start


CONTACT_KINDS = ("intra", "inter")


def motion_facts(motion: np.ndarray) -> dict:
    """What the motion metrics read from a clip set, computed once: per-frame contact states
    per kind and the physical figures (means over clips, so any reordering keeps them)."""
    return {"frames": {kind: metrics.contact_frames(motion, kind) for kind in CONTACT_KINDS},
            "physical": {"Penetration_mm": 1e3 * metrics.penetration_depth(motion),
                         "Jitter": metrics.jitter(motion),
                         "BoneDev_mm": 1e3 * metrics.bone_length_deviation(motion),
                         "JointLimit": metrics.joint_limit_violation_rate(motion)}}


def score_facts(facts: dict, gt_facts: dict | None = None, empty: float = 1.0, order=None) -> dict:
    """The physical figures, and with paired ground truth the contact P/R/F1 (HandX's per-clip
    labels), per-frame P/R and timing error; `order` scores the clips reordered (clip i taken
    from `order[i]`) without recomputing their facts."""
    out = dict(facts["physical"])
    if gt_facts is not None:
        for kind in CONTACT_KINDS:
            pred, true = facts["frames"][kind], gt_facts["frames"][kind]
            pred = pred if order is None else pred[order]
            if pred.shape != true.shape:
                raise ValueError(f"contact scores: generated {pred.shape} vs ground truth {true.shape} contact frames")
            prf = metrics.prf_from_labels(pred.any(axis=1), true.any(axis=1), empty)
            out[f"C_P_{kind}"], out[f"C_R_{kind}"], out[f"C_F1_{kind}"] = prf["precision"], prf["recall"], prf["f1"]
            prf = metrics.prf_from_labels(pred, true, empty)
            out[f"Cf_P_{kind}"], out[f"Cf_R_{kind}"] = prf["precision"], prf["recall"]
            out[f"C_timing_{kind}"] = metrics.timing_error_of_frames(pred, true)["error"]
    return out


def motion_metrics(motion: np.ndarray, paired_gt: np.ndarray | None, empty: float = 1.0) -> dict:
    """Contact P/R/F1 (against paired ground truth; `empty`: their value over an empty
    denominator, per protocol) and the physical metrics."""
    out = score_facts(motion_facts(motion), None if paired_gt is None else motion_facts(paired_gt), empty)
    if paired_gt is not None:
        out["MPJPE_mm"] = 1e3 * metrics.mpjpe(motion, paired_gt)
    return out


def embedding_metrics(text_emb: np.ndarray, motion_emb: np.ndarray, ref_emb: np.ndarray, rng: np.random.Generator,
                      batch_size: int | None = None, mm_emb: np.ndarray | None = None,
                      protocol: str = metrics.DEFAULT_PROTOCOL) -> dict:
    """R@1-3 (shuffled into batches: the protocol's size unless `batch_size`), FID vs `ref_emb`,
    Diversity, MM-Dist, MultiModality."""
    p = metrics.get_protocol(protocol)
    n = len(text_emb)
    order = rng.permutation(n)
    r = metrics.r_precision(text_emb[order], motion_emb[order], top_k=3,
                            batch_size=batch_size or p.r_precision_batch, ties=p.ties,
                            whole_batch_when_short=p.whole_batch_when_short)
    out = {"R@1": r[0], "R@2": r[1], "R@3": r[2], "FID": metrics.fid(ref_emb, motion_emb),
           "Diversity": metrics.diversity(motion_emb, min(300, n), seed=int(rng.integers(2**31))),
           "MM-Dist": metrics.matching_distance(text_emb, motion_emb)}
    if mm_emb is not None:
        out["MultiModality"] = metrics.multimodality(mm_emb, min(10, mm_emb.shape[1]), seed=int(rng.integers(2**31)))
    return {k: float(v) for k, v in out.items()}


def evaluate(evaluator, gt_motion: np.ndarray, captions: Sequence[Sequence[tuple]],
             generate: GenerateFn | dict[str, GenerateFn] | None = None,
             *, model_name: str = "model", replications: int = 20, seed: int = 0, mm_texts: int = 100,
             mm_generations: int = 30, heldout: tuple[np.ndarray, Sequence[Sequence[tuple]]] | None = None,
             batch_size: int | None = None, progress: bool = True,
             protocol: str = metrics.DEFAULT_PROTOCOL, shuffled_texts: bool = False, project: bool = False,
             refine_contacts: bool = False, samples_per_call: int = 4096) -> dict:
    """Replicated evaluation. Rows: 'ground truth', optionally 'held-out ground truth'
    (other clips, e.g. from the train split, scored against the same test reference), and
    `model_name` when `generate` is given (or one row per name when it is a dict of them).
    `protocol` ("handx" or "humanml3d", `metrics.PROTOCOLS`) fixes the R-precision batch
    (unless `batch_size`), tie and empty-denominator conventions; it goes into the meta.
    `shuffled_texts` adds, per generator, a row '<name>, captions shuffled': each clip's
    caption scored against a sample made from another clip's caption (a derangement of the
    replication's samples), and a `text_dependence` summary (a model that follows its prompts
    scores clearly lower there). `project` adds, per generator, a row '<name>, projected': the
    same samples after kinematic projection (`handx_jax.hand.projection`), with `ProjMPJPE_mm`,
    their distance from the raw samples. `refine_contacts` adds a row '<name>, projected + stated
    contacts': the projected samples with the contacts their prompts state closed
    (`handx_jax.hand.contacts.refine_contacts`; it reads the captions, so it measures how well
    stated contacts can be imposed, not a contact skill of the model).

    Speed: every caption is embedded once; the ground truth's motion metrics (the same in
    every replication) are computed once; each generator is called once for as many
    replications as fit in `samples_per_call` samples (their texts and MultiModality texts
    together), and those samples are projected and embedded together. `timing_s` in the
    result gives the wall seconds per stage."""
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    p = metrics.get_protocol(protocol)
    batch_size = batch_size or p.r_precision_batch
    n = len(gt_motion)
    if n < batch_size and not p.whole_batch_when_short:
        raise ValueError(f"evaluation needs at least {batch_size} clips for R-precision batches, got {n}")
    times = StageTimes()
    with times("embed"):
        gt_emb = evaluator.encode_motion(gt_motion)
        table = CaptionTable(evaluator, captions)
        held_emb = held_table = None
        if heldout is not None:
            held_emb, held_table = evaluator.encode_motion(heldout[0]), CaptionTable(evaluator, heldout[1])
    with times("metrics"):  # ground truth's motion metrics do not depend on the draw
        gt_facts = motion_facts(gt_motion)
        gt_motion_row = {**score_facts(gt_facts, gt_facts, p.empty_prf), "MPJPE_mm": 0.0}
        held_motion_row = score_facts(motion_facts(heldout[0])) if heldout is not None else None
    mm_texts = min(mm_texts, n)
    mm_per_rep = mm_texts * mm_generations if mm_generations > 1 and mm_texts > 0 else 0
    generators = {} if generate is None else dict(generate) if isinstance(generate, dict) else {model_name: generate}
    per_row: dict[str, list[dict]] = {"ground truth": []}
    if heldout is not None:
        per_row["held-out ground truth"] = []
    for name in generators:
        per_row[name] = []
        if shuffled_texts:
            per_row[shuffled_row(name)] = []
        if project:
            per_row[projected_row(name)] = []
        if refine_contacts:
            per_row[refined_row(name)] = []

    draws = []  # per replication: (texts, text embeddings, MultiModality clip picks)
    with times("metrics"):
        for rep in range(replications):
            rng = np.random.default_rng([seed, rep])
            texts, text_emb = table.draw(rng)
            row = embedding_metrics(text_emb, gt_emb, gt_emb, rng, batch_size, protocol=p)
            per_row["ground truth"].append({**row, **gt_motion_row})
            if heldout is not None:
                _, held_text_emb = held_table.draw(rng)
                row = embedding_metrics(held_text_emb, held_emb, gt_emb, rng, batch_size, protocol=p)
                per_row["held-out ground truth"].append({**row, **held_motion_row})
            pick = np.random.default_rng([seed, rep, 1]).choice(n, mm_texts, replace=False) if mm_per_rep else None
            draws.append((texts, text_emb, pick))

    per_rep = n + mm_per_rep
    reps_per_call = max(1, int(samples_per_call) // per_rep)
    bar = tqdm(total=replications * len(generators), desc="evaluate", unit="rep", disable=not progress or not generators,
               dynamic_ncols=True)
    for name, gen_fn in generators.items():
        for first in range(0, replications, reps_per_call):
            group = range(first, min(first + reps_per_call, replications))
            prompts = []
            for rep in group:
                texts, _, pick = draws[rep]
                prompts += texts
                if mm_per_rep:  # text-major: generation j of MultiModality text i is row i * G + j
                    prompts += [texts[i] for i in pick for _ in range(mm_generations)]
            with times("sample"):
                motion = _check_generated(gen_fn(prompts, 1, seed * 1000 + first), len(prompts), gt_motion.shape[1:])
            with times("project"):
                base = _project(motion) if project or refine_contacts else None
                proj = None if base is None else base.motion
            with times("refine"):
                refined = _refine(motion, base, prompts) if refine_contacts else None
            with times("embed"):
                emb = evaluator.encode_motion(motion)
                proj_emb = evaluator.encode_motion(proj) if project else None
                refined_emb = evaluator.encode_motion(refined) if refine_contacts else None
            variants = [(name, motion, emb)]  # (row, samples, their embeddings)
            if project:
                variants.append((projected_row(name), proj, proj_emb))
            if refine_contacts:
                variants.append((refined_row(name), refined, refined_emb))
            with times("metrics"):
                for k, rep in enumerate(group):
                    texts, text_emb, pick = draws[rep]
                    own, mm = slice(k * per_rep, k * per_rep + n), slice(k * per_rep + n, (k + 1) * per_rep)
                    raw, raw_emb = motion[own], emb[own]
                    common = (text_emb, gt_emb, gt_motion, gt_facts, seed, rep, batch_size, p)
                    raw_facts = motion_facts(raw)
                    for row_name, m, m_emb in variants:  # raw, projected, refined: one row each
                        facts = raw_facts if m is motion else motion_facts(m[own])
                        mm_emb = m_emb[mm].reshape(mm_texts, mm_generations, -1) if mm_per_rep else None
                        row = _sample_row(m[own], m_emb[own], facts, *common, mm_emb=mm_emb)
                        if m is not motion:
                            row["ProjMPJPE_mm"] = 1e3 * metrics.mpjpe(m[own], raw)
                        per_row[row_name].append(row)
                    if shuffled_texts:  # clip i's caption against the sample made from clip other[i]'s
                        other = derangement(n, np.random.default_rng([seed, rep, 3]))
                        per_row[shuffled_row(name)].append(_sample_row(raw, raw_emb, raw_facts, *common, order=other))
            bar.update(len(group))
    bar.close()
    rows = {name: report.summarize_replications(reps) for name, reps in per_row.items()}
    dependence = {name: text_dependence(rows[name], rows[shuffled_row(name)])
                  for name in generators if shuffled_texts}
    meta = {"replications": replications, "num_samples": n, "seed": seed, "mm_texts": mm_texts,
            "mm_generations": mm_generations if generators else 0, "protocol": p.name,
            "r_precision_batch": batch_size,
            "evaluator": getattr(evaluator, "source", "?"), "evaluator_step": getattr(evaluator, "step", None)}
    out = {"rows": rows, "meta": meta, "timing_s": dict(times)}
    if dependence:
        out["text_dependence"] = dependence
    return out


def _sample_row(motion, motion_emb, facts, text_emb, gt_emb, gt_motion, gt_facts, seed, rep, batch_size, protocol,
                mm_emb=None, order=None) -> dict:
    """One replication's row of generated `motion` (clip i taken from `order[i]` when given)
    paired with the drawn captions; `facts` are `motion_facts(motion)`."""
    if order is not None:
        motion, motion_emb = motion[order], motion_emb[order]
    row = embedding_metrics(text_emb, motion_emb, gt_emb, np.random.default_rng([seed, rep, 2]), batch_size, mm_emb,
                            protocol=protocol)
    row.update(score_facts(facts, gt_facts, protocol.empty_prf, order))
    row["MPJPE_mm"] = 1e3 * metrics.mpjpe(motion, gt_motion)
    return row


def _project(motion: np.ndarray):
    from handx_jax.hand import projection

    return projection.project(motion)


def _refine(motion: np.ndarray, base, prompts: Sequence[tuple]) -> np.ndarray:
    from handx_jax.hand import contacts

    intra, inter = contacts.prompt_contacts(prompts)
    return contacts.refine_contacts(motion, base=base, intra_named=intra, inter_named=inter).motion


def shuffled_row(name: str) -> str:
    return f"{name}, captions shuffled"


def projected_row(name: str) -> str:
    return f"{name}, projected"


def refined_row(name: str) -> str:
    return f"{name}, projected + stated contacts"


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices `other` with other[i] != i for every i (a cycle along a random order)."""
    if n < 2:
        raise ValueError("shuffling captions across clips needs at least 2 clips")
    order = rng.permutation(n)
    other = np.empty(n, np.int64)
    other[order] = np.roll(order, -1)
    return other


def text_dependence(matched: dict, shuffled: dict, metric: str = "R@3") -> dict:
    """R@3 with each clip's own captions vs with other clips' captions: `follows_text` when
    the matched interval lies wholly above the shuffled one."""
    a, b = matched[metric], shuffled[metric]
    return {metric: a["mean"], f"{metric}_ci95": a["ci95"], f"{metric}_shuffled": b["mean"],
            f"{metric}_shuffled_ci95": b["ci95"], "delta": a["mean"] - b["mean"],
            "follows_text": bool(a["mean"] - a["ci95"] > b["mean"] + b["ci95"])}


def _check_generated(motion, count: int, shape: tuple) -> np.ndarray:
    motion = np.asarray(motion, np.float32)
    if motion.shape != (count, *shape):
        raise ValueError(f"generator returned motion of shape {motion.shape}, expected {(count, *shape)}")
    if not np.all(np.isfinite(motion)):
        raise ValueError("generator returned NaN or infinite joint positions")
    return motion


# ------------------------------------------------------------------ run directories --


def run_config(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {workdir} is not a run directory")
    with open(path) as f:
        return json.load(f)


def checkpoint_steps(workdir: str) -> list[int]:
    """Finished checkpoint steps of a run, oldest first; FileNotFoundError when there are none."""
    from handx_jax.train import checkpoint

    steps = checkpoint.all_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {checkpoint.checkpoint_dir(workdir)}: train first")
    return [int(s) for s in steps]


def latest_step(workdir: str) -> int:
    return checkpoint_steps(workdir)[-1]


def load_split(data_dir: str, split: str, seq_len: int, num: int | None, seed: int):
    """(names, motion, captions) of a split, optionally a seeded random subset of `num` clips."""
    from handx_jax.data import store

    path = store.find_split(data_dir, split)
    names, motion, captions = clip_arrays(store.load_any(path), seq_len, source=path)
    if num is not None and num < len(names):
        pick = np.sort(np.random.default_rng(seed).choice(len(names), num, replace=False))
        names, motion, captions = [names[i] for i in pick], motion[pick], [captions[i] for i in pick]
    return names, motion, captions


def run_generator(workdir: str, *, step: int | None = None, batch_size: int = 64, **family_options) -> GenerateFn:
    """`generate` backed by the run in `workdir` (checkpoint `step`, default the newest),
    through its model family's sampler (`handx_jax.families`); `family_options` are that
    sampler's own options (diffusion: steps, guidance, method)."""
    from handx_jax import families

    return families.generator(workdir, step=step, batch_size=batch_size, **family_options)


def diffusion_generator(workdir: str, steps: int, guidance: float, method: str = "ddim",
                        step: int | None = None, batch_size: int = 64) -> GenerateFn:
    """`run_generator` with the diffusion family's options."""
    return run_generator(workdir, step=step, batch_size=batch_size, steps=steps, guidance=guidance, method=method)


def evaluate_run(workdir: str, evaluator_dir: str, *, num_samples: int | None = None, replications: int = 20,
                 steps: int | None = None, guidance: float | None = None, seed: int = 0, split: str = "test",
                 mm_texts: int = 100, mm_generations: int = 30, data_dir: str | None = None,
                 heldout: bool = True, write: bool = True, progress: bool = True, step: int | None = None,
                 batch_size: int = 64, protocol: str = metrics.DEFAULT_PROTOCOL, text_check: bool = True,
                 family_options: dict | None = None, project: bool = True, refine_contacts: bool = False) -> dict:
    """`handx evaluate`: evaluate checkpoint `step` (default the newest) of `workdir` with the
    evaluator in `evaluator_dir` under `protocol`; write `W/eval/metrics.json` and
    `W/eval/table.md` (under `W/eval/step_<N>/` for an earlier checkpoint) and append to
    metrics.jsonl. `batch_size` is the sampling batch; `text_check` adds the row with
    captions shuffled across clips (`evaluate(shuffled_texts=True)`); `project` the row of the
    same samples after kinematic projection (`evaluate(project=True)`). The run's family's
    sampler generates; `steps` and `guidance` (when given) and `family_options` are its
    sampling options (unset ones take the sampler's defaults)."""
    from handx_jax.eval.evaluator import load_evaluator
    from handx_jax.train import checkpoint

    workdir = os.path.abspath(workdir)
    config = run_config(workdir)
    data_dir = data_dir or (config.get("data") or {}).get("dir")
    if not data_dir:
        raise ValueError(f"{workdir}/config.json has no data.dir; pass --data DIR")
    available = checkpoint_steps(workdir)
    newest = available[-1]
    step = newest if step is None else int(step)
    if step not in available:
        raise FileNotFoundError(f"checkpoint step {step} not in {checkpoint.checkpoint_dir(workdir)}; have {available}")
    started = time.perf_counter()
    evaluator = load_evaluator(evaluator_dir)
    _, gt_motion, captions = load_split(data_dir, split, evaluator.seq_len, num_samples, seed)
    held = None
    if heldout and split != "train":
        _, held_motion, held_captions = load_split(data_dir, "train", evaluator.seq_len, len(gt_motion), seed + 1)
        if len(held_motion) >= 32:
            held = (held_motion, held_captions)
    options = {k: v for k, v in (("steps", steps), ("guidance", guidance)) if v is not None}
    options.update(family_options or {})
    generate = run_generator(workdir, step=step, batch_size=batch_size, progress=progress, **options)
    load_s = time.perf_counter() - started
    name = f"{config.get('family', 'model')} {config.get('size', '?')}, step {step}"
    result = evaluate(evaluator, gt_motion, captions, generate, model_name=name, replications=replications,
                      seed=seed, mm_texts=mm_texts, mm_generations=mm_generations, heldout=held, progress=progress,
                      protocol=protocol, shuffled_texts=text_check, project=project,
                      refine_contacts=refine_contacts)
    result["timing_s"] = {"load": load_s, **result["timing_s"]}  # sample includes the model's restore and compile
    result["meta"].update({"workdir": workdir, "step": step, "split": split, "data_dir": data_dir,
                           "sample_steps": steps, "guidance": guidance, "sampling_options": options,
                           "model_row": name})
    from handx_jax.train import artifacts

    result["meta"]["evaluator_run"] = artifacts.identity(evaluator_dir)  # which evaluator (and tokenizer) scored it
    if write:
        result["paths"] = write_outputs(workdir, result, name, step, subdir=None if step == newest else f"step_{step}")
    return result


def write_outputs(workdir: str, result: dict, row: str, step: int, subdir: str | None = None) -> dict:
    """metrics.json and table.md under W/eval (or W/eval/<subdir>); the row's eval/<metric>
    line, with `step`, into metrics.jsonl."""
    out_dir = os.path.join(workdir, "eval", *([subdir] if subdir else []))
    os.makedirs(out_dir, exist_ok=True)
    paths = {"metrics": os.path.join(out_dir, "metrics.json"), "table": os.path.join(out_dir, "table.md")}
    report.write_json(paths["metrics"], result)
    meta = result["meta"]
    caption = (f"Evaluation of {workdir} at step {step}: {meta['replications']} replications, "
               f"{meta['num_samples']} test clips, mean ± 95 % interval; {meta.get('protocol', '?')} "
               f"protocol (R-precision batches of {meta.get('r_precision_batch', '?')}).\n\n")
    report.write_text(paths["table"], caption + report.markdown_table(result) + "\n")
    record = report.log_record(result, row, step)
    names = {"dir": "evaluator_run", "step": "evaluator_run_step"}
    record.update({names.get(k, f"evaluator_{k}"): v for k, v in (result["meta"].get("evaluator_run") or {}).items()})
    check = result.get("text_dependence", {}).get(row)
    if check:
        record.update({"eval/R@3_shuffled": check["R@3_shuffled"], "eval/R@3_shuffled_ci95": check["R@3_shuffled_ci95"],
                       "eval/follows_text": check["follows_text"]})
    paths["log"] = report.append_metrics(workdir, record)
    return paths


# ------------------------------------------------------------------- sanity checks --


def permute_right_frames(motion: np.ndarray, seed: int = 0) -> np.ndarray:
    """Copy of `motion` whose right hand plays its own frames in a random order (per clip)."""
    motion = np.asarray(motion)
    order = np.argsort(np.random.default_rng(seed).random(motion.shape[:2]), axis=1)  # (N, T) permutations
    out = np.array(motion, copy=True)
    out[:, :, 1] = np.take_along_axis(motion[:, :, 1], order[:, :, None, None], axis=1)
    return out


def mismatch_hands(motion: np.ndarray, seed: int = 0) -> np.ndarray:
    """Copy of `motion` where each clip's right hand comes from another clip (a random
    derangement): each hand alone is real, but the two no longer act together."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(motion))
    source = np.empty_like(order)
    source[order] = np.roll(order, 1)  # clip order[k] takes the right hand of order[k-1]
    out = np.array(motion, copy=True)
    out[:, :, 1] = motion[source, :, 1]
    return out


def gaussian_noise_like(motion: np.ndarray, seed: int = 0) -> np.ndarray:
    """Noise motions: each coordinate drawn from a Gaussian with that coordinate's mean and
    std over the given clips (right marginals, no structure)."""
    rng = np.random.default_rng(seed)
    mean, std = motion.mean(axis=0), motion.std(axis=0)
    return (mean + std * rng.standard_normal(motion.shape)).astype(np.float32)


def contact_timing_checks(motion: np.ndarray, seeds: int = 20, seed: int = 0) -> dict:
    """HandX contact F1 (clip-level labels) of `motion` against itself, and against copies
    whose two hands no longer share their timing, over `seeds` random draws each:

    - `hands_mismatched`: each clip's right hand comes from another clip (`mismatch_hands`),
      so both hands keep their own motion but their timelines are shuffled across clips;
    - `right_frames_permuted`: the right hand plays its own frames in random order
      (`permute_right_frames`). Contacts held for a long part of the clip survive this.

    Intra-hand labels are per hand, so only the inter-hand figures measure the timing
    between the hands. Needs no evaluator: use every clip available, since the figures
    are only as steady as the number of positive labels (reported as `contact_positives_*`).
    """
    motion = np.asarray(motion)
    if len(motion) < 2:
        raise ValueError(f"contact timing checks need at least 2 clips, got {len(motion)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out: dict = {"contact_clips": int(len(motion)), "contact_seeds": int(seeds)}
    shuffles = {"hands_mismatched": mismatch_hands, "right_frames_permuted": permute_right_frames}
    for kind in ("intra", "inter"):
        true = metrics.contact_labels(motion, kind)
        out[f"contact_positives_{kind}"] = int(true.sum())
        out[f"C_F1_{kind}_self"] = metrics.contact_prf(motion, motion, kind)["f1"]
        for name, shuffle in shuffles.items():
            shuffled = (shuffle(motion, seed * 1000 + k) for k in range(seeds))
            f1 = report.summarize([metrics.prf_from_labels(metrics.contact_labels(m, kind), true)["f1"]
                                   for m in shuffled])
            out[f"C_F1_{kind}_{name}"] = f1["mean"]
            out[f"C_F1_{kind}_{name}_ci95"] = f1["ci95"]
            out[f"C_F1_{kind}_{name}_max"] = max(f1["values"])
    return out


def sanity_checks(evaluator, gt_motion: np.ndarray, heldout_motion: np.ndarray, seed: int = 0,
                  contact_motion: np.ndarray | None = None, contact_seeds: int = 20) -> dict:
    """Reference figures that say whether the evaluator and the metrics can be trusted:
    FID of held-out ground truth vs of noise (both against `gt_motion`), and the contact
    timing checks (`contact_timing_checks`) on `contact_motion` (default `gt_motion`)."""
    gt_emb = evaluator.encode_motion(gt_motion)
    out = {"FID_heldout_gt": metrics.fid(gt_emb, evaluator.encode_motion(heldout_motion)),
           "FID_noise": metrics.fid(gt_emb, evaluator.encode_motion(gaussian_noise_like(gt_motion, seed)))}
    out["FID_ratio_noise_over_heldout"] = out["FID_noise"] / max(out["FID_heldout_gt"], 1e-12)
    out.update(contact_timing_checks(gt_motion if contact_motion is None else contact_motion, contact_seeds, seed))
    return out
