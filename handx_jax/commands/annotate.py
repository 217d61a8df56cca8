"""`handx features` and `handx annotate`: event JSON of clips, and captions from a reasoner."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    feats = subparsers.add_parser(
        "features", help="print the HandX event JSON of clips in a file",
        description="Extract motion features, segment events and print the per-clip JSON.")
    feats.add_argument("file", help="clip file (HandX release npz or .clips.npz)")
    feats.add_argument("--clip", action="append", default=None,
                       help="clip name (repeatable); default: every clip")
    feats.add_argument("--indent", type=int, default=2, help="JSON indent (0: one line per clip)")
    feats.set_defaults(func=run_features)

    ann = subparsers.add_parser(
        "annotate", help="caption clips from their motion (rules or LLM reasoner)",
        description="Replace every clip's captions with five reasoner-written triplets.")
    ann.add_argument("--src", required=True, help="input clip file")
    ann.add_argument("--out", required=True,
                     help="output file: *.clips.npz writes our format, other names the HandX "
                          "format plus a .clips.npz beside it (see --format)")
    ann.add_argument("--format", default="auto", choices=("auto", "handx", "clips", "both"))
    ann.add_argument("--backend", default="rules", choices=("rules", "llm"))
    ann.add_argument("--seed", type=int, default=0, help="wording seed (rules) / jitter seed")
    ann.add_argument("--llm-url", default="http://127.0.0.1:8000/v1",
                     help="OpenAI-compatible base URL or full chat-completions URL")
    ann.add_argument("--llm-model", default="gpt-4o-mini")
    ann.add_argument("--llm-key-env", default="OPENAI_API_KEY",
                     help="name of the environment variable holding the API key")
    ann.add_argument("--llm-timeout", type=float, default=60.0,
                     help="deadline in seconds for a whole request (connect, send, read all)")
    ann.add_argument("--llm-max-caption-chars", type=int, default=400,
                     help="longest caption accepted; longer answers are asked again")
    ann.add_argument("--concurrency", type=int, default=4, help="parallel LLM requests")
    ann.add_argument("--max-retries", type=int, default=5,
                     help="retries per request on timeout, 429 and 5xx")
    ann.add_argument("--max-format-retries", type=int, default=2,
                     help="re-asks after a malformed answer")
    ann.add_argument("--cache", default=None,
                     help="answer cache directory (default: <out>.llm_cache for --backend llm)")
    ann.add_argument("--prompt", default=None, help="prompt template file (default: packaged)")
    ann.add_argument("--allow-partial", action="store_true",
                     help="write the clips that succeeded even if some failed (they are listed)")
    ann.add_argument("--events-out", default=None, help="also write per-clip event JSONL here")
    ann.add_argument("--report", default=None, help="report JSON path (default: <out>.report.json)")
    ann.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                     help="processes measuring and captioning clips with --backend rules "
                          "(default: CPU cores, at most 4)")
    ann.add_argument("--no-progress", action="store_true")
    ann.set_defaults(func=run_annotate)


def run_features(args: argparse.Namespace) -> int:
    from handx_jax.annotate import pipeline
    from handx_jax.data import store
    clips = store.load_any(args.file)
    if args.clip:
        missing = [c for c in args.clip if c not in clips]
        if missing:
            print(f"{args.file}: no clip named {', '.join(map(repr, missing))}", file=sys.stderr)
            return 1
        clips = {c: clips[c] for c in args.clip}
    try:
        docs = pipeline.clip_event_docs(clips, progress=False, source=args.file)
    except ValueError as err:  # FeatureError names the file and clip
        print(f"error: {err}", file=sys.stderr)
        return 1
    if len(docs) == 1:
        print(json.dumps(next(iter(docs.values())), indent=args.indent or None))
    else:
        for name, doc in docs.items():
            print(json.dumps({"clip": name, "events": doc}, indent=args.indent or None))
    return 0


def run_annotate(args: argparse.Namespace) -> int:
    import os

    from handx_jax.annotate import pipeline, reasoner_llm
    template = reasoner_llm.load_template(args.prompt) if args.backend == "llm" else None
    if args.backend == "llm" and not os.environ.get(args.llm_key_env):
        print(f"note: ${args.llm_key_env} is not set; requests go without an API key",
              file=sys.stderr)
    config = reasoner_llm.LLMConfig(
        url=args.llm_url, model=args.llm_model, key_env=args.llm_key_env,
        timeout=args.llm_timeout, max_retries=args.max_retries,
        max_format_retries=args.max_format_retries, seed=args.seed,
        max_caption_chars=args.llm_max_caption_chars)
    cache = args.cache or (args.out + ".llm_cache" if args.backend == "llm" else None)
    try:
        report = pipeline.annotate_file(
            args.src, args.out, backend=args.backend, seed=args.seed, fmt=args.format,
            concurrency=args.concurrency, cache=cache, allow_partial=args.allow_partial,
            events_out=args.events_out, progress=not args.no_progress, llm_config=config,
            template=template, workers=args.workers)
    except (ValueError, FileNotFoundError) as err:  # bad input: the message names file/clip
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.backend == "llm":
        report["max_caption_chars"] = config.max_caption_chars
        report["llm_timeout_s"] = config.timeout
    report_path = args.report or args.out + ".report.json"
    pipeline._atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    print(f"annotated {report['annotated']}/{report['clips']} clips with {args.backend}"
          + (f"; llm requests {report['requests']}, cache hits {report['cache_hits']}, "
             f"captions capped at {config.max_caption_chars} characters"
             if args.backend == "llm" else ""))
    for item in report["failed"]:
        print(f"FAILED {item['clip']}: {item['error']}", file=sys.stderr)
    if report.get("note"):
        print(report["note"], file=sys.stderr)
    for path in report["written"]:
        print(f"wrote {path}")
    print(f"report: {report_path}")
    return 1 if report["failed"] else 0
