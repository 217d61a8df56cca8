"""`handx quickstart [--out DIR]`: the whole pipeline once, small, on a laptop CPU.

synthetic clips -> rules captions -> tokenizer -> a briefly trained evaluator, the
dataset's frozen text tower (a second contrastive model) with its precomputed caption
embeddings, and an XS diffusion model conditioned on them (plus an untrained twin as a
baseline) -> samples -> replicated evaluation. `--family autoregressive` trains an FSQ motion
tokenizer and a small prefix-LM on the same embeddings instead, `--family both` trains both
families and reports them in one table
-> a GIF -> `DIR/report.md` with the metrics table and every path it made, and `DIR/report.html`.

Takes about 9.5 minutes on 2 idle CPU cores (the limit is 15). Every step depends on
another stage of the project; a step whose code is missing stops the run with an error
naming it rather than faking its output.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time


@dataclasses.dataclass
class Settings:
    """Sizes and step counts of the run (the defaults fit the time budget)."""

    num_train: int = 4096  # data and captions are cheap; more clips keep the evaluator from memorising
    num_test: int = 128
    seed: int = 0
    evaluator_config: str = "configs/evaluator.py:size=XS"
    evaluator_steps: int = 400
    evaluator_batch: int = 64
    evaluator_lr: float = 5e-4
    diffusion_config: str = "configs/diffusion.py:size=XS"
    diffusion_steps: int = 400
    diffusion_batch: int = 32
    diffusion_lr: float = 5e-4
    # Steps of the frozen text tower (configs/text_tower.py) whose caption embeddings condition
    # the diffusion model; 0 = a text encoder trained from scratch with it (`text=scratch`: at
    # this budget it collapses to one condition for all captions, docs/diffusion.md).
    text_tower_config: str = "configs/text_tower.py:size=XS"
    text_tower_steps: int = 400
    sample_steps: int = 20
    guidance: float = 2.5
    replications: int = 3
    num_samples: int = 128  # every test clip: steadier R-precision batches and FID
    mm_texts: int = 4
    mm_generations: int = 10
    contact_seeds: int = 20  # random hand shuffles behind the contact timing checks
    untrained_baseline: bool = True
    family: str = "diffusion"  # diffusion | autoregressive | both
    # Autoregressive family: an FSQ tokenizer (a shared stage, like the text tower), then a
    # prefix-LM shaped like the XS denoiser (4 layers, width 256) whose steps give it the
    # denoiser's training FLOPs (`training_flops`: 690 x 32 examples = 400 x 32 denoiser examples).
    fsq_config: str = "configs/fsq.py:size=S,codebook=512"
    fsq_steps: int = 1000
    fsq_batch: int = 64
    fsq_lr: float = 1e-3
    ar_config: str = "configs/autoregressive.py:size=T"
    ar_shape: tuple = ("model.num_layers=4", "model.num_heads=4", "model.d_model=256", "model.mlp_dim=768")
    ar_steps: int = 690
    ar_batch: int = 32
    ar_lr: float = 5e-4
    ar_options: tuple = (("temperature", 1.0), ("top_k", 20))


TINY = Settings(num_train=96, num_test=40, evaluator_config="configs/evaluator.py:size=T", evaluator_steps=20,
                evaluator_batch=16, text_tower_config="configs/text_tower.py:size=T", text_tower_steps=20,
                diffusion_config="configs/diffusion.py:size=T", diffusion_steps=20,
                diffusion_batch=8, sample_steps=4, replications=2, num_samples=32, mm_texts=2,
                mm_generations=2, untrained_baseline=True, fsq_config="configs/fsq.py:size=T",
                fsq_steps=20, fsq_batch=16, ar_shape=(), ar_steps=20, ar_batch=8)
FAMILY_CHOICES = ("diffusion", "autoregressive", "both")


def register(subparsers) -> None:
    p = subparsers.add_parser("quickstart", help="run the whole pipeline small (about 10 minutes on 2 cores)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--out", default="quickstart", help="output directory (default ./quickstart)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke version (tests, CI)")
    p.add_argument("--replications", type=int, default=None,
                   help="evaluation replications (default 3; the evaluation protocol's 20 add about 26 s per replication and "
                        "model on 2 cores, about 25 minutes in all)")
    p.add_argument("--family", choices=FAMILY_CHOICES, default="diffusion",
                   help="which model family to train and evaluate (both: one table with each family's rows)")
    p.set_defaults(func=run)


class StepTimer:
    """Prints a banner per step and keeps wall-clock seconds for the report."""

    def __init__(self, total: int):
        self.total, self.index, self.times = total, 0, {}
        self.start = time.perf_counter()

    def step(self, name: str):
        timer = self

        class _Step:
            def __enter__(self_inner):
                timer.index += 1
                print(f"\n[{timer.index}/{timer.total}] {name}", file=sys.stderr, flush=True)
                self_inner.t0 = time.perf_counter()

            def __exit__(self_inner, exc_type, *rest):
                timer.times[name] = time.perf_counter() - self_inner.t0
                if exc_type is None:
                    print(f"    done in {timer.times[name]:.1f} s (total {time.perf_counter() - timer.start:.0f} s)",
                          file=sys.stderr, flush=True)

        return _Step()


def _require(module: str, attr: str, step: str):
    """Import `module.attr` or stop with an error naming the missing stage."""
    import importlib

    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise RuntimeError(f"quickstart step '{step}' needs {module}.{attr}, which is not available ({err})") from err


def _train_config(spec: str, data_dir: str, steps: int, batch: int, seed: int, lr: float | None = None):
    from handx_jax import configlib

    config = configlib.load_config(spec)
    with config.ignore_type():
        config.data.dir = data_dir
    config.train.steps = steps
    config.train.batch_size = batch
    config.train.warmup_steps = max(1, min(int(config.train.warmup_steps), steps // 10))
    config.train.log_every = max(1, steps // 20)
    config.train.ckpt_every = steps
    config.train.seed = seed
    config.train.ema_decay = min(float(config.train.ema_decay), 0.99)
    if lr is not None:
        config.train.lr = lr
    return config


def _diffusion_spec(s: Settings) -> str:
    """The denoiser's config spec: conditioned on the text tower, or a scratch text encoder."""
    return s.diffusion_config + (",text=tower" if s.text_tower_steps > 0 else ",text=scratch")


def _lm_spec(s: Settings) -> str:
    """The prefix-LM's config spec, its codebook the tokenizer's (`fsq_config`)."""
    from handx_jax import configlib

    return f"{s.ar_config},codebook={int(configlib.load_config(s.fsq_config).model.codebook)}"


def training_flops(settings: Settings) -> dict[str, float]:
    """Analytic training FLOPs of each family's model (its FLOPs per example x batch x steps),
    from the config specs alone; the tokenizer and the text tower are shared stages, not counted."""
    from handx_jax import configlib
    from handx_jax.autoregressive.lm_task import forward_flops as lm_forward_flops
    from handx_jax.models.diffusion import forward_flops as diffusion_forward_flops

    s = settings
    embed_dim = int(configlib.load_config(s.text_tower_config).model.text_d_model)
    diffusion = configlib.load_config(_diffusion_spec(s))
    lm = configlib.apply_overrides(configlib.load_config(_lm_spec(s)), list(s.ar_shape))
    for config in (diffusion, lm):
        config.model.text_embed_dim = embed_dim
    return {"diffusion": 3 * diffusion_forward_flops(diffusion) * s.diffusion_batch * s.diffusion_steps,
            "autoregressive": 3 * lm_forward_flops(lm) * s.ar_batch * s.ar_steps}


def run_quickstart(out: str, settings: Settings) -> dict:
    """Run every step into `out`; returns the paths made and the evaluation result."""
    from handx_jax import jax_setup

    jax_setup.setup()
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    s = settings
    paths: dict[str, str] = {"out": out}
    if s.family not in FAMILY_CHOICES:
        raise ValueError(f"quickstart family {s.family!r}: choose one of {', '.join(FAMILY_CHOICES)}")
    diffusion_on = s.family in ("diffusion", "both")
    ar_on = s.family in ("autoregressive", "both")
    if ar_on and s.text_tower_steps <= 0:
        raise ValueError("the autoregressive family needs the text tower (text_tower_steps > 0)")
    timer = StepTimer(total=(9 if s.text_tower_steps > 0 else 8) - (not diffusion_on) + 2 * ar_on)

    with timer.step("synthetic data"):
        write_dataset = _require("handx_jax.data.synthetic", "write_dataset", "synthetic data")
        raw = os.path.join(out, "raw")
        from handx_jax.data import manifest

        if not manifest.is_complete(raw):  # complete only with its manifest, written last
            write_dataset(raw, s.num_train, s.num_test, frames=60, seed=s.seed, progress=True)
        paths["synthetic"] = raw

    with timer.step("rules captions (annotate)"):
        annotate_file = _require("handx_jax.annotate.pipeline", "annotate_file", "rules captions")
        from handx_jax.data import store

        data = os.path.join(out, "data")
        os.makedirs(data, exist_ok=True)
        for split in ("train", "test"):
            dst = os.path.join(data, f"{split}.clips.npz")
            if not os.path.isfile(dst):
                rep = annotate_file(store.find_split(raw, split), dst, backend="rules", seed=s.seed)
                if rep.get("failed"):
                    raise RuntimeError(f"annotation of {split} failed for {len(rep['failed'])} clips: {rep['failed'][:3]}")
        paths["data"] = data

    with timer.step("tokenizer"):
        from handx_jax.text import tokenizer as tokenizer_lib

        paths["tokenizer"] = tokenizer_lib.ensure_tokenizer(data, 2000)
        print(f"    {tokenizer_lib.load_tokenizer(data).get_piece_size()} pieces", file=sys.stderr)

    with timer.step("evaluator training"):
        from handx_jax.commands.evaluate import train_evaluator

        ev_dir = os.path.join(out, "evaluator")
        config = _train_config(s.evaluator_config, data, s.evaluator_steps, s.evaluator_batch, s.seed, s.evaluator_lr)
        train_evaluator(config, ev_dir, data)
        paths["evaluator"] = ev_dir

    tower = None
    if s.text_tower_steps > 0:
        with timer.step("text tower and caption embeddings"):
            # Separate from the scoring evaluator: conditioning on the evaluator's own text
            # tower would inflate R-precision.
            from handx_jax.train import text_tower

            tower = _train_config(s.text_tower_config, data, s.text_tower_steps, s.evaluator_batch, s.seed + 1,
                                  s.evaluator_lr)
            paths["text_tower"] = os.path.join(out, "text_tower")
            text_tower.train_tower(tower, paths["text_tower"], data)
            paths["text_embeddings"] = text_tower.embed_dataset(paths["text_tower"], data)

    def diffusion_config(steps, lr):
        config = _train_config(_diffusion_spec(s), data, steps, s.diffusion_batch, s.seed, lr)
        if tower is not None:
            config.model.text_tower = paths["text_tower"]
            config.model.text_embed_dim = int(tower.model.text_d_model)
        return config

    from handx_jax.train import loop

    runs: dict[str, tuple[str, str | None, dict]] = {}  # family -> (run dir, untrained twin, sampling options)

    def train_with_twin(name, make_config, steps, lr):
        """Train `out/<name>`, and its untrained twin (same model, one step at learning rate 0:
        the initial weights as a baseline row) when asked; returns both run directories."""
        run = os.path.join(out, name)
        loop.train(make_config(steps, lr), run)
        paths[name] = run
        if not s.untrained_baseline:
            return run, None
        twin = os.path.join(out, f"{name}_untrained")
        base = make_config(1, 0.0)
        base.train.ema_decay = 0.0
        loop.train(base, twin)
        paths[f"{name}_untrained"] = twin
        return run, twin
    if diffusion_on:
        with timer.step("diffusion training"):
            _require("handx_jax.diffusion.task", "DiffusionTask", "diffusion training")
            run_dir, base_dir = train_with_twin("diffusion", diffusion_config, s.diffusion_steps, s.diffusion_lr)
            runs["diffusion"] = (run_dir, base_dir, {"steps": s.sample_steps, "guidance": s.guidance})

    if ar_on:
        with timer.step("FSQ motion tokenizer"):
            _require("handx_jax.autoregressive.fsq_task", "FsqTask", "FSQ motion tokenizer")
            fsq_dir = os.path.join(out, "fsq")
            loop.train(_train_config(s.fsq_config, data, s.fsq_steps, s.fsq_batch, s.seed, s.fsq_lr), fsq_dir)
            paths["fsq"] = fsq_dir

        def ar_config(steps, lr):
            from handx_jax import configlib

            config = _train_config(_lm_spec(s) + f",fsq={fsq_dir}", data, steps, s.ar_batch, s.seed, lr)
            config = configlib.apply_overrides(config, list(s.ar_shape))
            if s.ar_shape:  # name the run by its shape (layers x width), as the size table does
                config.size = f"{int(config.model.num_layers)}x{int(config.model.d_model)}"
            config.model.text_tower = paths["text_tower"]
            config.model.text_embed_dim = int(tower.model.text_d_model)
            return config

        with timer.step("autoregressive training"):
            _require("handx_jax.autoregressive.lm_task", "PrefixLMTask", "autoregressive training")
            ar_dir, ar_base = train_with_twin("autoregressive", ar_config, s.ar_steps, s.ar_lr)  # tokenizes first
            runs["autoregressive"] = (ar_dir, ar_base, dict(s.ar_options))
    run_dir = next(iter(runs.values()))[0]  # the first family's run carries the written metrics

    with timer.step("samples"):
        from handx_jax.data import handx_format
        from handx_jax.eval import driver

        _, test_motion, test_captions = driver.load_split(data, "test", 60, None, s.seed)
        prompts = [test_captions[i][0] for i in range(4)]
        first_family = next(iter(runs))
        motion = driver.run_generator(runs[first_family][0], **runs[first_family][2])(prompts, 1, s.seed)
        samples = {f"sample_{i:02d}": {"motion": motion[i], "left_annotation": [p[0]],
                                       "right_annotation": [p[1]], "interaction_annotation": [p[2]]}
                   for i, p in enumerate(prompts)}
        paths["samples"] = os.path.join(out, "samples.npz")
        handx_format.save_handx(paths["samples"], samples)

    with timer.step("evaluation"):
        from handx_jax.eval import evaluator as evaluator_lib, report

        ev = evaluator_lib.load_evaluator(ev_dir)
        _, gt_motion, captions = driver.load_split(data, "test", ev.seq_len, s.num_samples, s.seed)
        _, held_motion, held_captions = driver.load_split(data, "train", ev.seq_len, len(gt_motion), s.seed + 1)
        gens, row, step = {}, None, None
        for family, (workdir, base_dir, options) in runs.items():
            family_step = driver.latest_step(workdir)
            size = driver.run_config(workdir).get("size", "?")
            name = f"{family} {size}, step {family_step}"
            gens[name] = driver.run_generator(workdir, **options)
            if base_dir is not None:
                gens[f"{family} {size}, untrained"] = driver.run_generator(base_dir, **options)
            if row is None:
                row, step = name, family_step
        result = driver.evaluate(ev, gt_motion, captions, gens, replications=s.replications, seed=s.seed,
                                 mm_texts=s.mm_texts, mm_generations=s.mm_generations,
                                 heldout=(held_motion, held_captions), project=True)
        result["meta"].update({"workdir": run_dir, "step": step, "sample_steps": s.sample_steps,
                               "guidance": s.guidance, "data_dir": data,
                               "families": {f: r[0] for f, r in runs.items()}})
        _, contact_motion, _ = driver.load_split(data, "test", ev.seq_len, None, s.seed)  # every test clip
        result["sanity"] = driver.sanity_checks(ev, gt_motion, held_motion, s.seed, contact_motion=contact_motion,
                                                contact_seeds=s.contact_seeds)
        eval_paths = driver.write_outputs(run_dir, result, row, step)
        paths["metrics"], paths["table"] = eval_paths["metrics"], eval_paths["table"]

    with timer.step("GIF"):
        render_gif = _require("handx_jax.diffusion.render", "render_gif", "GIF")
        paths["gif"] = render_gif(motion[0], os.path.join(out, "sample_00.gif"), title="sample_00",
                                  captions=prompts[0], fps=30)

    total = time.perf_counter() - timer.start
    paths["report"] = os.path.join(out, "report.md")
    report.write_text(paths["report"], render_report(result, paths, timer.times, total, s, prompts[0]))
    from handx_jax.report import html as html_report  # the same run as one self-contained HTML page

    paths["html_report"] = html_report.write_run_report(run_dir, os.path.join(out, "report.html"),
                                                        renders=[(paths["gif"], prompts[0])], title="handx quickstart")
    summary = {"paths": paths, "seconds": timer.times, "total_seconds": total, "result": result}
    report.write_json(os.path.join(out, "quickstart.json"), summary)
    return summary


def render_report(result: dict, paths: dict, times: dict, total: float, s: Settings, prompt) -> str:
    from handx_jax.eval import report

    lines = [
        "# handx quickstart report", "",
        f"Synthetic data ({s.num_train} train / {s.num_test} test clips) with rules captions; an evaluator "
        f"({s.evaluator_config}, {s.evaluator_steps} steps)"
        + (f" and a diffusion model ({s.diffusion_config}, {s.diffusion_steps} steps, batch {s.diffusion_batch}"
           + (f"; conditioned on the precomputed caption embeddings of the dataset's frozen text tower "
              f"({s.text_tower_config}, {s.text_tower_steps} steps), not the scoring evaluator"
              if s.text_tower_steps > 0 else "; its text encoder trained from scratch")
           + f"; sampling with {s.sample_steps} DDIM steps, guidance {s.guidance})"
           if s.family in ("diffusion", "both") else "")
        + (f" and an autoregressive model: an FSQ tokenizer ({s.fsq_config}, {s.fsq_steps} steps) and a prefix-LM "
           f"({s.ar_config} {' '.join(s.ar_shape)}, {s.ar_steps} steps, batch {s.ar_batch}) on the same caption "
           f"embeddings, sampled with {', '.join(f'{k} {v}' for k, v in s.ar_options)}"
           if s.family in ("autoregressive", "both") else "")
        + f". Each figure is the mean over {s.replications} replications ± the 95 % "
        f"interval; {result['meta']['num_samples']} test clips. These are smoke-test sizes: the numbers show "
        "the pipeline works, not what the models can do.", "",
        report.markdown_table(result), "",
        "Reference checks (FID: ground truth of the evaluated test clips as the reference set; contact "
        f"timing: every test clip, {s.contact_seeds} random hand shuffles, mean with its 95 % half-interval "
        "(`_ci95`) and worst draw (`_max`)):", "",
        *[f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in result.get("sanity", {}).items()],
        "",
        f"Sample prompt for the GIF: left \"{prompt[0]}\"; right \"{prompt[1]}\"; relation \"{prompt[2]}\".", "",
        "## Files", "",
    ]
    lines += [f"- {name}: `{path}`" for name, path in paths.items()]
    lines += ["", "## Time per step (seconds)", ""]
    lines += [f"- {name}: {sec:.1f}" for name, sec in times.items()]
    lines += [f"- total: {total:.1f}", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = dataclasses.replace(TINY if args.tiny else Settings(), seed=args.seed,
                                   family=getattr(args, "family", "diffusion"))
    if args.replications is not None:
        if args.replications < 1:
            print(f"error: --replications must be >= 1, got {args.replications}", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, replications=args.replications)
    try:
        summary = run_quickstart(args.out, settings)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from handx_jax.eval import report

    print(report.markdown_table(summary["result"]))
    print(f"\nquickstart finished in {summary['total_seconds']:.0f} s; report: {summary['paths']['report']}")
    return 0
