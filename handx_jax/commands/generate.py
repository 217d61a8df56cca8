"""`handx sample` (text-to-motion from a trained run) and `handx render` (skeleton MP4 / GIF)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from handx_jax.diffusion import conditioning  # numpy only: its mode names feed the parser


def register(subparsers) -> None:
    s = subparsers.add_parser("sample", help="generate motions for a text prompt from a trained run",
                              description="Sample motions from a diffusion run; writes HandX-format npz.")
    s.add_argument("--workdir", required=True, help="run directory with checkpoints/")
    s.add_argument("--left", default="", help="left-hand description")
    s.add_argument("--right", default="", help="right-hand description")
    s.add_argument("--relation", default="", help="two-hand relation description")
    s.add_argument("--prompts", help="JSONL file of {\"left\", \"right\", \"relation\"} objects (instead of the flags)")
    s.add_argument("--num", type=int, default=1, help="samples per prompt (default 1)")
    s.add_argument("--steps", type=int, default=50, help="respaced sampling steps (default 50)")
    s.add_argument("--guidance", type=_guidance, default=2.5,
                   help="classifier-free guidance scale, finite and >= 0 (default 2.5; 1 = off, 0 = unconditional)")
    s.add_argument("--method", choices=("ddim", "ddpm"), default="ddim")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=64, help="samples per compiled batch")
    s.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a sampling option of the run's model family (repeatable), e.g. temperature=0.8; "
                        "--steps/--guidance/--method are the diffusion family's")
    s.add_argument("--project", action="store_true",
                   help="kinematic projection of every sample: constant bone lengths per clip, joint angles "
                        "within the hand model's limits (handx_jax.hand.projection)")
    s.add_argument("--refine-contacts", action="store_true",
                   help="project (as --project), then close the fingertip contacts the prompt states (thumb on "
                        "a fingertip, fingertips on the other palm) where the sample comes closest, bones and "
                        "joint limits kept (handx_jax.hand.contacts)")
    s.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    s.add_argument("--no-ema", action="store_true", help="use the raw rather than the EMA parameters")
    s.add_argument("--out", required=True, help="output .npz (HandX release format)")
    s.add_argument("--condition", choices=conditioning.MODES,
                   help="tie every sample to --reference: first/last 5 frames, whole poses at --keyframes, one "
                        "hand given (the other generated), both wrist trajectories, or the contacting joints "
                        "at --keyframes")
    s.add_argument("--reference", help="with --condition: HandX-format or .clips.npz file holding the reference clip")
    s.add_argument("--clip", help="with --reference: clip name (default: the first)")
    s.add_argument("--keyframes",
                   help="with --condition keyframes or contact: comma-separated frame indices, e.g. 0,30,59")
    s.add_argument("--stages", action="store_true",
                   help="long horizon: the prompts (one per --prompts line) are consecutive stages of one motion")
    s.add_argument("--context", type=int, default=10,
                   help="with --stages: frames of the previous stage each stage continues from (default 10)")
    s.add_argument("--view", action="store_true",
                   help="also write a Rerun recording of the samples (OUT with .rrd; needs the [view] extra)")
    s.set_defaults(func=run_sample)

    r = subparsers.add_parser("render", help="animate clips' skeletons (MP4 with ffmpeg, else GIF)",
                              description="Render clips of a HandX-format (or .clips.npz) file side by side, "
                                          "optionally beside a reference clip.")
    r.add_argument("path", help="input .npz (HandX format or .clips.npz)")
    r.add_argument("--out", required=True, help="output .mp4 or .gif (no suffix: MP4 when ffmpeg is present, else GIF)")
    r.add_argument("--clip", default=None, help="clip name, or a comma list drawn side by side (default: the first)")
    r.add_argument("--reference", default=None, help="another file whose clip is drawn beside, as 'reference'")
    r.add_argument("--reference-clip", default=None,
                   help="clip of --reference (default: the same name if it has one, else its first)")
    r.add_argument("--fps", type=int, default=30)
    r.add_argument("--size", type=float, default=3.6, help="panel width in inches (100 pixels each)")
    r.set_defaults(func=run_render)


def _guidance(text: str) -> float:
    """argparse type of --guidance: a finite scale >= 0 (NaN or inf would give NaN motion)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the guidance scale must be finite and >= 0")
    return value


PROMPT_KEYS = ("left", "right", "relation")


def _prompt(line: str, where: str) -> tuple[str, str, str]:
    """One prompt line: a JSON object whose keys are among PROMPT_KEYS, each a string."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not a JSON object ({err})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: not a JSON object (got {type(obj).__name__})")
    for key, value in obj.items():
        if key not in PROMPT_KEYS:
            raise ValueError(f"{where}: unknown key {key!r}; expected {', '.join(PROMPT_KEYS)}")
        if not isinstance(value, str):
            raise ValueError(f"{where}: key {key!r} is {json.dumps(value)}, expected a string")
    if not any(obj.get(k, "").strip() for k in PROMPT_KEYS):
        raise ValueError(f"{where}: every description is empty")
    return tuple(obj.get(k, "") for k in PROMPT_KEYS)


def read_prompts(args) -> list[tuple[str, str, str]]:
    if args.prompts:
        out = []
        with open(args.prompts, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    out.append(_prompt(line, f"{args.prompts}:{n}"))
        if not out:
            raise ValueError(f"{args.prompts}: no prompts")
        return out
    if not (args.left or args.right or args.relation):
        raise ValueError("give --left/--right/--relation or --prompts")
    return [(args.left, args.right, args.relation)]


def run_sample(args: argparse.Namespace) -> int:
    from handx_jax import jax_setup

    jax_setup.setup()
    from handx_jax.diffusion.sampling import sample_from_workdir

    try:
        prompts = read_prompts(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.num < 1 or args.steps < 1:
        print("error: --num and --steps must be >= 1", file=sys.stderr)
        return 2
    if args.stages:
        return _view(args, _run_long_horizon(args, prompts))
    if args.condition or args.reference or args.keyframes:
        return _view(args, _run_conditioned(args, prompts))
    from handx_jax import families

    family = families.run_family(args.workdir)
    options = families.parse_options(getattr(args, "option", []))
    if family.name == "diffusion":
        chosen = {"steps": args.steps, "guidance": args.guidance, "method": args.method, **family.check_options(options)}
        motion = sample_from_workdir(args.workdir, prompts, num_per_text=args.num, seed=args.seed,
                                     batch_size=args.batch_size, step=args.step, ema=not args.no_ema, progress=True,
                                     **chosen)
    else:  # any other family: its sampler, with its own --option NAME=VALUE options
        motion = family.load_sampler(args.workdir, step=args.step)(
            prompts, num_per_text=args.num, seed=args.seed, batch_size=args.batch_size, progress=True,
            **family.check_options(options))
    if getattr(args, "project", False) or getattr(args, "refine_contacts", False):
        from handx_jax.hand import projection

        result = projection.project(motion)
        motion = result.motion
        print(f"projected onto the hand model: mean joint change {1e3 * result.error.mean():.2f} mm")
        if getattr(args, "refine_contacts", False):
            from handx_jax.hand import contacts

            intra, inter = (np.repeat(named, args.num, axis=0) for named in contacts.prompt_contacts(prompts))
            refined = contacts.refine_contacts(motion, base=result, intra_named=intra, inter_named=inter)
            motion = refined.motion
            print(f"contacts refined: {int(refined.intra_captured.sum())} thumb-fingertip and "
                  f"{int(refined.inter_captured.sum())} fingertip-palm pairs pulled, mean joint change "
                  f"{1e3 * refined.moved.mean():.2f} mm")
    clips = _save(args.out, _prompt_clips(prompts, motion, args.num))
    print(f"wrote {len(clips)} clips of shape {tuple(motion.shape[1:])} to {args.out}")
    return _view(args, 0)


def _view(args, rc: int) -> int:
    """`--view`: after a successful run, every sample (and the reference) in one .rrd."""
    if rc != 0 or not getattr(args, "view", False):
        return rc
    from handx_jax.commands import view

    try:
        summary = view.view_clips(args.out, clip_names=view.load_names(args.out)[:8], reference=args.reference,
                                  reference_clip=args.clip)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: --view: {err}", file=sys.stderr)
        return 2
    print(f"wrote {summary['path']} ({len(summary['clips'])} clips); open it with: rerun {summary['path']}")
    return 0


def _prompt_clips(prompts, motion, num: int) -> dict:
    """HandX-format clips `sample_<prompt>_<k>`: sample k of prompt i is row i * num + k."""
    return {f"sample_{i:04d}_{j:03d}": {"motion": motion[i * num + j], "left_annotation": [left],
                                        "right_annotation": [right], "interaction_annotation": [relation]}
            for i, (left, right, relation) in enumerate(prompts) for j in range(num)}


def _save(out: str, clips: dict) -> dict:
    from handx_jax.data.handx_format import save_handx

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_handx(out, clips)
    return clips


def _reference_clip(args) -> tuple[str, np.ndarray]:
    """(name, motion) of the --reference clip; ValueError naming the file and clip."""
    from handx_jax.data import store

    clips = store.load_any(args.reference)
    if not clips:
        raise ValueError(f"{args.reference} holds no clips")
    name = args.clip or next(iter(clips))
    if name not in clips:
        raise ValueError(f"{args.reference} has no clip {name!r} (first few: {', '.join(list(clips)[:5])})")
    return name, np.asarray(clips[name]["motion"], np.float32)


def _run_conditioned(args: argparse.Namespace, prompts: list[tuple[str, str, str]]) -> int:
    """`--condition MODE --reference FILE`: every sample tied to a reference clip."""
    from handx_jax.diffusion.sampling import WorkdirSampler

    if not (args.condition and args.reference):
        print("error: --condition and --reference go together", file=sys.stderr)
        return 2
    if (args.condition in conditioning.KEYFRAME_MODES) != bool(args.keyframes):
        print("error: --keyframes is needed with --condition keyframes or contact, and only there", file=sys.stderr)
        return 2
    try:
        keyframes = [int(k) for k in args.keyframes.split(",")] if args.keyframes else None
    except ValueError:
        print(f"error: --keyframes must be comma-separated integers, got {args.keyframes!r}", file=sys.stderr)
        return 2
    try:
        name, reference = _reference_clip(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sampler = WorkdirSampler(args.workdir, step=args.step, ema=not args.no_ema)
    seq_len = int(sampler.config.data.seq_len)
    if len(reference) < seq_len:
        print(f"error: {args.reference} clip {name!r} has {len(reference)} frames; the model needs {seq_len}",
              file=sys.stderr)
        return 2
    if len(reference) > seq_len:
        print(f"note: using the first {seq_len} of the {len(reference)} frames of {name!r}")
    try:
        motion = sampler.conditioned(prompts, reference[:seq_len], args.condition, keyframes=keyframes,
                                     num_per_text=args.num, steps=args.steps, guidance=args.guidance,
                                     seed=args.seed, method=args.method, batch_size=args.batch_size, progress=True)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    clips = _save(args.out, _prompt_clips(prompts, motion, args.num))
    print(f"wrote {len(clips)} clips conditioned on {name!r} ({args.condition}) to {args.out}")
    return 0


def _run_long_horizon(args: argparse.Namespace, stages: list[tuple[str, str, str]]) -> int:
    """`--stages`: the prompts are consecutive stages of one long motion per sample."""
    from handx_jax.diffusion.sampling import WorkdirSampler

    sampler = WorkdirSampler(args.workdir, step=args.step, ema=not args.no_ema)
    try:
        motion = sampler.long_horizon(stages, num=args.num, context=args.context, steps=args.steps,
                                      guidance=args.guidance, seed=args.seed, method=args.method)
    except ValueError as err:  # e.g. a --context outside the model's window, named by the library
        print(f"error: {err}", file=sys.stderr)
        return 2
    joined = {key: [" / ".join(stage[r] for stage in stages)]
              for r, key in enumerate(("left_annotation", "right_annotation", "interaction_annotation"))}
    clips = _save(args.out, {f"long_{j:03d}": {"motion": motion[j], **joined} for j in range(args.num)})
    print(f"wrote {len(clips)} long clips of {motion.shape[1]} frames ({len(stages)} stages, "
          f"{args.context}-frame overlap) to {args.out}")
    return 0


def run_render(args: argparse.Namespace) -> int:
    from handx_jax.diffusion.render import Panel, render_panels
    from handx_jax.viz import clips as clips_lib

    try:
        shown = clips_lib.load_shown(args.path, args.clip.split(",") if args.clip else None,
                                     reference=args.reference, reference_clip=args.reference_clip)
        path = render_panels([Panel(c.motion, c.name, c.captions) for c in shown], args.out, fps=args.fps,
                             size=args.size, progress=True)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({', '.join(f'{c.name}: {len(c.motion)} frames' for c in shown)})")
    return 0
