"""Print the evaluation stage's reference checks as one table.

    python tools/eval_checks.py --evaluator E --data DIR [--model W ...] [--replications 5]

Rows: ground-truth retrieval (R@1-3) with the evaluator, FID of held-out ground truth
(train clips) and of Gaussian noise motions against the test clips, contact F1 of the
ground truth against itself and against copies whose hands no longer share their timing
(every test clip, `--contact-seeds` random shuffles; `driver.contact_timing_checks`),
and, for every `--model` run directory, R@3 and FID of its samples (e.g. a trained and an
untrained diffusion model, as `handx quickstart` makes them).
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--evaluator", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--model", action="append", default=[], help="diffusion run directory (repeatable)")
    p.add_argument("--replications", type=int, default=5)
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contact-seeds", type=int, default=20, help="random hand shuffles for the contact checks")
    args = p.parse_args(argv)

    from handx_jax import jax_setup

    jax_setup.setup()
    from handx_jax.eval import driver, evaluator

    ev = evaluator.load_evaluator(args.evaluator)
    _, gt, caps = driver.load_split(args.data, "test", ev.seq_len, args.num_samples, args.seed)
    _, held, held_caps = driver.load_split(args.data, "train", ev.seq_len, len(gt), args.seed + 1)
    gens = {f"model {w}": driver.diffusion_generator(w, args.steps, 2.5) for w in args.model}
    result = driver.evaluate(ev, gt, caps, gens, replications=args.replications, seed=args.seed,
                             mm_generations=0, heldout=(held, held_caps), progress=True)
    _, every_test_clip, _ = driver.load_split(args.data, "test", ev.seq_len, None, args.seed)
    checks = driver.sanity_checks(ev, gt, held, args.seed, contact_motion=every_test_clip,
                                  contact_seeds=args.contact_seeds)
    rows = result["rows"]
    gt_row = rows["ground truth"]
    lines = ["| check | value |", "|---|---|"]
    for k in ("R@1", "R@2", "R@3"):
        lines.append(f"| ground truth {k} | {gt_row[k]['mean']:.3f} ± {gt_row[k]['ci95']:.3f} |")
    for k, v in checks.items():
        lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    for name in gens:
        for k in ("R@3", "FID"):
            lines.append(f"| {name} {k} | {rows[name][k]['mean']:.3f} ± {rows[name][k]['ci95']:.3f} |")
    print(f"{len(gt)} test clips, {args.replications} replications, evaluator {args.evaluator}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
