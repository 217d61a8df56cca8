"""Check the synthetic generator's 'Must show' properties and print one result table.

    python tools/check_synth.py --num-clips 1000 --variety-clips 10000 --workers 2

Over `--num-clips` clips (written to a temporary directory and validated in both formats):
contacts reached in their intended frames (fingertip distance < 2 cm within a hand and
between tips, < 2.5 cm from a fingertip to the other palm (mean of its 5 nearest palm
points, handx_jax.hand.geometry.palm_points), palms < 4 cm), inter-hand capsule
penetration <= 5 mm outside contacts, joint limits, bone-length constancy. Over
`--variety-clips` programs: duplicates, descriptor-family and relation coverage.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np

from handx_jax.data import validate
from handx_jax.data import synthetic
from handx_jax.data.synthetic import checks, layout, program
from handx_jax.data.synthetic.generator import clip_rng


def _row(name: str, value: str, target: str, ok: bool) -> str:
    return f"| {name:<50} | {value:>22} | {target:>14} | {'PASS' if ok else 'FAIL':>4} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-clips", type=int, default=1000)
    ap.add_argument("--variety-clips", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quality", default="high", choices=("high", "medium", "low"))
    args = ap.parse_args(argv)

    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = synthetic.write_dataset(tmp, args.num_clips, 0, seed=args.seed,
                                        quality=args.quality, workers=args.workers)
        problems = 0
        for key in ("train_handx", "train_clips"):
            report = validate.validate_file(paths[key])
            problems += len(report.problems)
        rows.append(_row(f"validate ({args.num_clips} clips, both formats)",
                         f"{problems} problems", "0", problems == 0))
        from handx_jax.data import store
        clips = store.load_clips(paths["train_clips"])
        gt_file = np.load(paths["train_ground_truth_npz"])
        gt = {k: gt_file[k] for k in gt_file.files}
        records = [json.loads(line) for line in open(paths["train_ground_truth_jsonl"])]
    motion = np.stack([clips[n]["motion"] for n in gt["names"]])
    gen_time = time.perf_counter() - start

    reach = checks.contact_reach(motion, gt)
    total_hit = sum(h for h, _ in reach.values())
    total = sum(n for _, n in reach.values())
    for key, label in (("intra", "thumb tip on fingertip < 2 cm"),
                       ("tip_palm", "fingertip on other palm < 2.5 cm"),
                       ("tip_tip", "fingertips across hands < 2 cm"),
                       ("palm_palm", "palms together < 4 cm")):
        hit, n = reach[key]
        frac = hit / max(n, 1)
        rows.append(_row(f"contact reached: {label}", f"{frac:.4f} of {n} fr",
                         ">= 0.98", n > 0 and frac >= 0.98))
    rows.append(_row("contact reached: all intended frames",
                     f"{total_hit / max(total, 1):.4f} of {total} fr", ">= 0.98",
                     total_hit >= 0.98 * total))

    extra = checks.unintended_contacts(motion, gt)
    far_frames = sum(v[0] for v in extra.values())
    far_clips = sum(v[1] for v in extra.values())
    rows.append(_row("  unintended contacts > 3 fr from intended ones",
                     f"{far_frames} fr in {far_clips} clips", "-", True))

    pen = checks.penetration(motion, gt["scale"])
    contact = checks.contact_frames(gt)
    free = pen[~contact]
    ok_frac = float((free <= checks.PENETRATION_M).mean())
    rows.append(_row("penetration <= 5 mm (non-contact frames)",
                     f"{ok_frac:.5f} of {free.size} fr", ">= 0.99", ok_frac >= 0.99))
    rows.append(_row("  max penetration outside contacts (mm)", f"{free.max() * 1e3:.2f}",
                     "-", True))
    viol = checks.limit_violations(gt["joint_angles"])
    rows.append(_row("joint-limit violations", f"{viol}", "0", viol == 0))
    dev, bound = checks.bone_length_deviation(motion)
    rows.append(_row("bone length max rel. deviation (float32)", f"{dev:.2e}",
                     f"<= {bound:.1e}", dev <= bound))

    # Variety over programs (and their laid-out events).
    vstart = time.perf_counter()
    progs, keys, skels, recs = [], set(), set(), []
    relations = collections.Counter()
    for i in range(args.variety_clips):
        prog = program.sample_program(clip_rng(args.seed, "train", i), 60)
        lay = layout.layout(prog)
        keys.add(checks.program_key(prog))
        skels.add(checks.skeleton_key(prog))
        relations[prog["relation"]["type"]] += 1
        recs.append({"events": lay.events})
    dup = args.variety_clips - len(keys)
    rows.append(_row(f"identical programs among {args.variety_clips}", f"{dup}", "0", dup == 0))
    rows.append(_row("  distinct discrete structures (no numbers)",
                     f"{len(skels)} / {args.variety_clips}", "-", True))
    for fam, frac in checks.family_coverage(recs).items():
        rows.append(_row(f"family {fam}", f"{frac:.3f} of clips", ">= 0.05", frac >= 0.05))
    for rel in program.RELATIONS:
        frac = relations[rel] / max(args.variety_clips, 1)
        rows.append(_row(f"relation {rel}", f"{frac:.3f} of clips", ">= 0.02", frac >= 0.02))
    var_time = time.perf_counter() - vstart

    print(f"synthetic generator check: seed {args.seed}, quality {args.quality}, "
          f"{args.num_clips} clips ({gen_time:.1f} s incl. writing), {args.variety_clips} "
          f"programs ({var_time:.1f} s)")
    print(f"| {'property':<50} | {'measured':>22} | {'target':>14} | {'ok':>4} |")
    print(f"|{'-' * 52}|{'-' * 24}|{'-' * 16}|{'-' * 6}|")
    for row in rows:
        print(row)
    failed = sum(r.endswith("FAIL |") for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
