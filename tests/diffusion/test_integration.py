"""End to end on a tiny learnable dataset: train a T model with the trainer, sample, render.

One module-scoped training run (single device) feeds every check: the loss falls, samples
keep bone lengths and are smooth (unlike decoded noise), and the CLI writes HandX-format
samples and a GIF.
"""

import os

import jax
import numpy as np
import pytest

from handx_jax import configlib
from handx_jax.diffusion import checks

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "diffusion.py")
STEPS = 300


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from handx_jax.train import loop

    root = tmp_path_factory.mktemp("diffusion_run")
    data_dir = str(root / "data")
    checks.write_toy_dataset(data_dir, num_train=64, num_test=8)
    config = configlib.load_config(CONFIG + ":size=T,runlocal")
    config.data.dir = data_dir
    config.train.steps = STEPS
    config.train.batch_size = 16
    config.train.lr = 3e-3
    config.train.log_every = 10
    config.train.ckpt_every = STEPS
    config.mesh.data = 1
    workdir = str(root / "run")
    loop.train(config, workdir, devices=jax.devices()[:1])
    return workdir, data_dir


def test_loss_falls(run):
    import json

    workdir, _ = run
    losses = [json.loads(line)["loss"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert len(losses) >= STEPS // 10
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:2]), losses


def test_samples_keep_bones_and_are_not_noise(run):
    from handx_jax.diffusion.sampling import features_to_joints, load_stats
    from handx_jax.diffusion.sampling import sample_from_workdir
    from handx_jax.train.checkpoint import restore_params

    workdir, data_dir = run
    prompts = [(checks.LEFT[a], checks.RIGHT[b], checks.RELATION[c]) for a, b, c in checks.COMBOS[::3]]
    motion = sample_from_workdir(workdir, prompts, num_per_text=2, steps=50, guidance=2.5, seed=0)
    assert motion.shape == (2 * len(prompts), 60, 2, 21, 3)
    err = checks.bone_length_error(motion)
    # Decoded Gaussian noise as the "noise" reference.
    config, _, _ = restore_params(workdir)
    noise = np.random.default_rng(0).normal(size=(len(motion), 60, 168)).astype(np.float32)
    noise_joints = features_to_joints(noise, load_stats(config), config.data.representation)
    noise_err = checks.bone_length_error(noise_joints)
    assert noise_err.mean() > 0.5
    # A 300-step T model is far from converged (longer runs: docs/diffusion.md); it must
    # still be an order of magnitude closer to the skeleton than decoded noise.
    assert err.mean() < 0.2 and np.median(err) < 0.1, (err.mean(), np.median(err))
    assert err.mean() < 0.3 * noise_err.mean()
    # Smooth: third differences far below those of decoded noise.
    assert checks.jitter(motion) < 0.02 * checks.jitter(noise_joints)


def test_sample_and_render_commands(run, tmp_path):
    from handx_jax import cli
    from handx_jax.data import handx_format

    workdir, _ = run
    out = str(tmp_path / "out.npz")
    rc = cli.main(["sample", "--workdir", workdir, "--left", checks.LEFT[0], "--right", checks.RIGHT[1],
                   "--relation", checks.RELATION[0], "--num", "2", "--steps", "10", "--out", out])
    assert rc == 0
    clips = handx_format.load_handx(out)
    assert len(clips) == 2
    clip = next(iter(clips.values()))
    assert clip["motion"].shape == (60, 2, 21, 3) and clip["left_annotation"] == [checks.LEFT[0]]
    gif = str(tmp_path / "out.gif")
    assert cli.main(["render", out, "--out", gif]) == 0
    with open(gif, "rb") as f:
        assert f.read(6) in (b"GIF89a", b"GIF87a")
    assert cli.main(["render", out, "--out", gif, "--clip", "nope"]) == 2


def test_workdir_sampler_restores_once_and_matches(run, monkeypatch):
    from handx_jax.diffusion import sampling
    from handx_jax.eval import driver
    from handx_jax.train import checkpoint

    workdir, _ = run
    prompts = [(checks.LEFT[0], checks.RIGHT[1], checks.RELATION[0])] * 3
    expected = sampling.sample_from_workdir(workdir, prompts, steps=8, seed=4)
    restores = []
    real_restore = checkpoint.restore_params
    monkeypatch.setattr(checkpoint, "restore_params", lambda *a, **k: restores.append(a) or real_restore(*a, **k))
    generate = driver.diffusion_generator(workdir, steps=8, guidance=2.5)
    first, second = generate(prompts, 1, 4), generate(prompts, 1, 5)
    assert len(restores) == 1  # the run is restored once for every later call
    np.testing.assert_allclose(first, expected, atol=1e-5)
    assert not np.allclose(first, second)  # another seed, other samples
    with pytest.raises(ValueError, match="no texts given"):
        sampling.WorkdirSampler(workdir)([])


@pytest.fixture(scope="module")
def long_horizon_run(run):
    return _long_horizon_seams(run[0])


def _long_horizon_seams(workdir):
    """(seam steps, inside-stage steps, cut between independent samples, motion, sampler) of
    three stages of 60 frames with a 10-frame context (160 frames), metres per frame."""
    from handx_jax.diffusion import sampling

    sampler = sampling.WorkdirSampler(workdir)
    stages = [(checks.LEFT[a], checks.RIGHT[b], checks.RELATION[c]) for a, b, c in checks.COMBOS[:3]]
    motion = sampler.long_horizon(stages, num=4, context=10, steps=20, seed=0)
    step = np.linalg.norm(np.diff(motion, axis=1), axis=-1).mean(axis=(2, 3))  # (4, 159) metres per frame
    seams = step[:, [59, 109]]  # last frame of a stage -> first new frame of the next
    inside = np.concatenate([step[:, 5:53], step[:, 65:103]], axis=1)
    independent = sampler(stages[:2], num_per_text=4, steps=20, seed=0)
    jump = np.linalg.norm(independent[4:, 10] - independent[:4, -1], axis=-1).mean(axis=(1, 2))
    return seams, inside, jump, motion, sampler, stages


def test_long_horizon_stages_join_smoothly(long_horizon_run):
    """The seams move like the frames inside a stage, and generation is deterministic."""
    seams, inside, jump, motion, sampler, stages = long_horizon_run
    assert motion.shape == (4, 60 + 2 * 50, 2, 21, 3) and np.isfinite(motion).all()
    assert seams.max() < 2.0 * inside.max(), (seams, inside.max())
    again = sampler.long_horizon(stages, num=4, context=10, steps=20, seed=0)
    np.testing.assert_array_equal(motion, again)
    with pytest.raises(ValueError, match="context must be between 1 and 59"):
        sampler.long_horizon(stages, context=60)


def test_long_horizon_seams_are_a_tenth_of_a_cut(long_horizon_run):
    seams, _, jump, _, _, _ = long_horizon_run
    assert seams.mean() < 0.1 * jump.mean(), (seams.mean(), jump.mean())


def test_long_horizon_command(run, tmp_path):
    import json

    from handx_jax import cli
    from handx_jax.data import handx_format

    workdir, _ = run
    prompts = tmp_path / "stages.jsonl"
    prompts.write_text("".join(json.dumps({"left": checks.LEFT[a], "right": checks.RIGHT[b],
                                           "relation": checks.RELATION[c]}) + "\n"
                               for a, b, c in checks.COMBOS[:2]))
    out = str(tmp_path / "long.npz")
    assert cli.main(["sample", "--workdir", workdir, "--prompts", str(prompts), "--stages", "--num", "2",
                     "--steps", "5", "--context", "20", "--out", out]) == 0
    clips = handx_format.load_handx(out)
    assert sorted(clips) == ["long_000", "long_001"]
    assert clips["long_000"]["motion"].shape == (60 + 40, 2, 21, 3)
    assert clips["long_000"]["left_annotation"] == [f"{checks.LEFT[checks.COMBOS[0][0]]} / {checks.LEFT[checks.COMBOS[1][0]]}"]
    assert cli.main(["sample", "--workdir", workdir, "--prompts", str(prompts), "--stages",
                     "--context", "0", "--out", out]) == 2


def _reference(data_dir):
    from handx_jax.data import store

    clips = store.load_any(store.find_split(data_dir, "test"))
    name = sorted(clips)[0]
    return name, np.asarray(clips[name]["motion"][:60], np.float32)


def test_conditioning_modes_keep_what_is_given(run):
    """Each mode reproduces the reference where it is given (up to float32 feature round
    trips) and generates the rest."""
    from handx_jax.diffusion import sampling

    workdir, data_dir = run
    _, ref = _reference(data_dir)
    sampler = sampling.WorkdirSampler(workdir)
    prompts = [(checks.LEFT[1], checks.RIGHT[0], checks.RELATION[1])]
    kw = dict(num_per_text=2, steps=10, seed=3)
    tol = 1e-4  # metres
    out = sampler.conditioned(prompts, ref, "reaction_left", **kw)
    assert out.shape == (2, 60, 2, 21, 3)
    np.testing.assert_allclose(out[:, :, 0], np.broadcast_to(ref[:, 0], out[:, :, 0].shape), atol=tol)
    assert np.abs(out[:, :, 1] - ref[:, 1]).max() > 100 * tol  # the other hand is generated
    out = sampler.conditioned(prompts, ref, "inbetween", **kw)
    np.testing.assert_allclose(out[:, :5], np.broadcast_to(ref[:5], out[:, :5].shape), atol=tol)
    np.testing.assert_allclose(out[:, -5:], np.broadcast_to(ref[-5:], out[:, -5:].shape), atol=tol)
    assert np.abs(out[:, 30] - ref[30]).max() > 100 * tol
    out = sampler.conditioned(prompts, ref, "keyframes", keyframes=[0, 30, 59], **kw)
    np.testing.assert_allclose(out[:, [0, 30, 59]], np.broadcast_to(ref[[0, 30, 59]], out[:, [0, 30, 59]].shape),
                               atol=tol)
    out = sampler.conditioned(prompts, ref, "wrist", **kw)
    np.testing.assert_allclose(out[:, :, :, 0], np.broadcast_to(ref[:, :, 0], out[:, :, :, 0].shape), atol=tol)
    touching = ref.copy()
    touching[30, 0, 17] = touching[30, 0, 16] + 0.004  # left index tip on the left thumb tip
    out = sampler.conditioned(prompts, touching, "contact", keyframes=[30], **kw)
    np.testing.assert_allclose(out[:, 30, 0, [16, 17]], np.broadcast_to(touching[30, 0, [16, 17]], (2, 2, 3)),
                               atol=tol)
    assert np.linalg.norm(out[:, 30, 0, 16] - out[:, 30, 0, 17], axis=-1).max() < 0.02  # in contact
    with pytest.raises(ValueError, match="unknown conditioning mode"):
        sampler.conditioned(prompts, ref, "telepathy", **kw)
    with pytest.raises(ValueError, match="window is 60"):
        sampler.conditioned(prompts, ref[:40], "inbetween", **kw)


def test_conditioned_sample_command(run, tmp_path):
    from handx_jax import cli
    from handx_jax.data import handx_format

    workdir, data_dir = run
    name, ref = _reference(data_dir)
    from handx_jax.data import store

    reference = store.find_split(data_dir, "test")
    out = str(tmp_path / "react.npz")
    base = ["sample", "--workdir", workdir, "--left", checks.LEFT[0], "--right", checks.RIGHT[1],
            "--relation", checks.RELATION[0], "--num", "2", "--steps", "5", "--out", out]
    assert cli.main(base + ["--condition", "reaction_right", "--reference", reference, "--clip", name]) == 0
    clips = handx_format.load_handx(out)
    assert len(clips) == 2
    np.testing.assert_allclose(clips["sample_0000_001"]["motion"][:, 1], ref[:, 1], atol=1e-4)
    assert cli.main(base + ["--condition", "keyframes", "--reference", reference]) == 2  # no --keyframes
    assert cli.main(base + ["--condition", "inbetween", "--reference", reference, "--clip", "nope"]) == 2
    assert cli.main(base + ["--reference", reference]) == 2  # --condition missing
