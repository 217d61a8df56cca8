"""The model-family registry: entries, resolution, lazy import errors, and a third family
registered from this test module, trained a few steps and sampled through every dispatch
point (`handx sample`, the evaluation driver's generator, the sweeps and the run reader)."""

import json
import os

import jax
import numpy as np
import pytest

from handx_jax import cli, families
from handx_jax.data import store
from tests.train import conftest as _compile_cache  # noqa: F401  (the trainer tests' persistent XLA cache)
from tests.train import toy_task

TOY = families.Family("toy", task=toy_task.TOY_TASK, sampler="tests.test_families:FakeSampler",
                      config="tests/train/toy_config.py", options=("wiggle",))


class FakeSampler:
    """A toy family's sampler: motion made from the trained parameters and the seed."""

    def __init__(self, workdir, step=None):
        from handx_jax.train.checkpoint import restore_params

        _, params, self.step = restore_params(workdir, step=step)
        self.level = float(sum(np.abs(np.asarray(x)).sum() for x in jax.tree_util.tree_leaves(params)))

    def __call__(self, texts, *, num_per_text=1, seed=0, batch_size=64, progress=False, wiggle=0.0):
        n = len(texts) * num_per_text
        rng = np.random.default_rng(seed)
        motion = rng.standard_normal((n, 60, 2, 21, 3)).astype(np.float32) * 0.01 * (1.0 + wiggle)
        return motion + np.float32(self.level * 1e-6)


@pytest.fixture()
def toy_family():
    families.register(TOY)
    yield TOY
    families.FAMILIES.pop("toy", None)


@pytest.fixture()
def toy_run(toy_family, tmp_path):
    from handx_jax.train import loop

    config = loop.add_trainer_defaults(toy_task.get_config())
    config.train.steps = 2
    config.train.ckpt_every = 2
    config.model.layers = 1
    workdir = str(tmp_path / "toy_run")
    loop.train(config, workdir, devices=jax.devices()[:1])
    return workdir


def test_registry_entries_and_resolution():
    diffusion = families.get("diffusion")
    from handx_jax.diffusion.sampling import WorkdirSampler
    from handx_jax.diffusion.task import DiffusionTask

    assert diffusion.task_class() is DiffusionTask and diffusion.sampler_class() is WorkdirSampler
    assert diffusion.config == "configs/diffusion.py"
    ar = families.get("autoregressive")
    assert ar.task == "handx_jax.autoregressive.lm_task:PrefixLMTask"
    assert ar.sampler == "handx_jax.autoregressive.sampling:WorkdirSampler"
    with pytest.raises(families.UnknownFamily, match="unknown model family 'nope'; registered: autoregressive, diffusion"):
        families.get("nope")


def test_family_of_by_field_or_task_and_errors():
    assert families.family_of({"family": "diffusion"}).name == "diffusion"
    assert families.family_of({"task": "handx_jax.autoregressive.lm_task:PrefixLMTask"}).name == "autoregressive"
    from handx_jax import configlib

    assert families.family_of(configlib.load_config("configs/diffusion.py:size=T")).name == "diffusion"
    with pytest.raises(families.UnknownFamily, match="register it in handx_jax/families.py"):
        families.family_of({"family": "fsq", "task": "handx_jax.autoregressive.fsq_task:FsqTask"})


def test_a_missing_family_module_fails_only_when_used_with_a_clear_error():
    broken = families.Family("broken", task="handx_jax.no_such_family.task:Task",
                             sampler="handx_jax.no_such_family.sampling:Sampler", config="configs/none.py")
    with pytest.raises(ModuleNotFoundError, match="family 'broken' task 'handx_jax.no_such_family.task:Task'"):
        broken.task_class()
    with pytest.raises(AttributeError, match="has no 'Nope'"):
        families.Family("x", task="handx_jax.families:Nope", sampler="a:b", config="c").task_class()
    with pytest.raises(ValueError, match="must look like"):
        families.Family("x", task="no_colon", sampler="a:b", config="c").task_class()


def test_options_are_checked_per_family():
    assert families.get("diffusion").check_options({"steps": 4}) == {"steps": 4}
    with pytest.raises(ValueError, match="family 'diffusion' takes no sampling option.*'top_k'"):
        families.get("diffusion").check_options({"top_k": 5})
    assert families.parse_options(["temperature=0.8", "top_k=20", "method=ddpm"]) == \
        {"temperature": 0.8, "top_k": 20, "method": "ddpm"}
    with pytest.raises(ValueError, match="name=value"):
        families.parse_options(["oops"])


def test_a_third_family_trains_and_samples_through_every_dispatch_point(toy_run, tmp_path):
    assert families.run_family(toy_run).name == "toy"
    texts = [("a", "b", "c"), ("d", "e", "f")]
    # the evaluation driver's generator
    from handx_jax.eval import driver

    generate = driver.run_generator(toy_run, wiggle=1.0)
    motion = generate(texts, 3, 7)
    assert motion.shape == (6, 60, 2, 21, 3) and motion.dtype == np.float32
    np.testing.assert_array_equal(motion, generate(texts, 3, 7))
    with pytest.raises(ValueError, match="family 'toy' takes no sampling option.*'steps'"):
        driver.run_generator(toy_run, steps=4)   # refused before anything is restored
    # `handx sample`
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"left": l, "right": r, "relation": x}) + "\n" for l, r, x in texts))
    out = str(tmp_path / "samples.npz")
    assert cli.main(["sample", "--workdir", toy_run, "--prompts", str(prompts), "--num", "2", "--seed", "7",
                     "--option", "wiggle=1.0", "--out", out]) == 0
    clips = store.load_any(out)
    assert len(clips) == 4 and clips["sample_0001_000"]["left_annotation"] == ["d"]
    sampled = np.stack([c["motion"] for c in clips.values()])
    np.testing.assert_allclose(sampled, FakeSampler(toy_run)(texts, num_per_text=2, seed=7, wiggle=1.0), atol=1e-6)
    # the sweeps and the scaling run reader
    from handx_jax.scaling import runs, sweeps

    point = sweeps.ScalePoint(family="toy", size="toy", data=1.0, steps=2)
    assert point.config_spec(runlocal=False) == "tests/train/toy_config.py:size=toy,data=1"
    assert runs.load_run(toy_run).family == "toy"


def test_the_family_is_forgotten_after_the_test():
    assert "toy" not in families.FAMILIES
