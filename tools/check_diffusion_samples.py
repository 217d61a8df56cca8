"""Train a diffusion config briefly on CPU, sample, and report bone-length and smoothness checks.

    python tools/check_diffusion_samples.py --size T --steps 1500 [--data toy|synthetic] [--workdir W]

`toy`: the eight forward-kinematics motions of `handx_jax.diffusion.checks` (bone error
against the rest skeleton); `synthetic`: the procedural generator's clips (bone drift
against each sample's own median bone lengths, plus the same for the data). Prints one
table: first and last logged loss, bone error/drift (mean, median, 95th percentile),
jitter of samples, data and decoded noise.
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="T")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--data", choices=("toy", "synthetic"), default="toy")
    parser.add_argument("--clips", type=int, default=256, help="synthetic train clips")
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=2.5)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from handx_jax import jax_setup

    jax_setup.setup()
    import jax
    import numpy as np

    from handx_jax import configlib
    from handx_jax.data import store
    from handx_jax.diffusion import checks
    from handx_jax.diffusion.sampling import features_to_joints, load_stats, sample_from_workdir
    from handx_jax.train import loop

    root = args.workdir or tempfile.mkdtemp(prefix="handx_check_")
    data_dir = os.path.join(root, "data")
    if not os.path.isdir(data_dir):
        if args.data == "toy":
            checks.write_toy_dataset(data_dir)
        else:
            from handx_jax.data import synthetic

            synthetic.write_dataset(data_dir, args.clips, max(args.clips // 8, 8), seed=0)
    config = configlib.load_config(os.path.join(ROOT, "configs", "diffusion.py") + f":size={args.size},runlocal")
    config.data.dir = data_dir
    config.train.steps, config.train.batch_size, config.train.lr = args.steps, args.batch, args.lr
    config.train.log_every, config.train.ckpt_every = 10, args.steps
    config.mesh.data = 1
    workdir = os.path.join(root, "run")
    t0 = time.time()
    loop.train(config, workdir, devices=jax.devices()[:1])
    train_s = time.time() - t0
    losses = [json.loads(line)["loss"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    clips = store.load_any(store.find_split(data_dir, "train"))
    names = list(clips)[:8]
    prompts = [(clips[n]["left_annotation"][0], clips[n]["right_annotation"][0], clips[n]["interaction_annotation"][0]) for n in names]
    motion = sample_from_workdir(workdir, prompts, num_per_text=2, steps=args.sample_steps, guidance=args.guidance)
    data = np.stack([clips[n]["motion"] for n in names])
    noise = np.random.default_rng(0).normal(size=(len(motion),) + (motion.shape[1], 168)).astype(np.float32)
    noise = features_to_joints(noise, load_stats(config), str(config.data.representation))
    measure = checks.bone_length_error if args.data == "toy" else checks.bone_length_drift
    label = "bone error vs rest skeleton" if args.data == "toy" else "bone drift vs own median"
    print(f"{args.size} on {args.data} data, {args.steps} steps (batch {args.batch}, lr {args.lr}) in {train_s:.0f} s; "
          f"DDIM-{args.sample_steps}, guidance {args.guidance}, {len(motion)} samples")
    print(f"loss: first logged {losses[0]:.4f}, last logged {losses[-1]:.4f}")
    print(f"| motion | {label}: mean | median | p95 | jitter m/s^3 |")
    print("|---|---|---|---|---|")
    for name, m in (("samples", motion), ("data", data), ("decoded noise", noise)):
        e = measure(m)
        print(f"| {name} | {e.mean():.4f} | {np.median(e):.4f} | {np.percentile(e, 95):.4f} | {checks.jitter(m):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
