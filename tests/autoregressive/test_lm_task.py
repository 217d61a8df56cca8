"""PrefixLMTask through the trainer: every size builds, golden shardings, 8- vs 1-device
losses, analytic FLOPs against XLA, the token pipeline, and bitwise resume after SIGKILL."""

import json
import os
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from handx_jax import configlib
from handx_jax.models import prefix_lm
from handx_jax.models.transformer import count_params
from handx_jax.train import checkpoint, flops, loop, metrics_log, optim, sharding, state
from tests.train import subprocess_util as sp

CONFIG = "configs/autoregressive.py"
SIZES = configlib.load_module(CONFIG).SIZES
FAKE_KEY = "fsq-test-key"


@pytest.mark.parametrize("size", list(SIZES))
def test_every_size_parses_and_builds_with_the_analytic_parameter_count(size):
    config = configlib.load_config(f"{CONFIG}:size={size},codebook=1024")
    task = loop.load_task(config)
    shapes = jax.eval_shape(lambda: task.init_params(jax.random.key(0)))
    layers, heads, width = SIZES[size]
    assert config.model.codebook_size == 1000 and task.model.vocab_size == 1002
    assert (config.model.num_layers, config.model.num_heads, config.model.d_model) == (layers, heads, width)
    from handx_jax.autoregressive.lm_task import parameter_counts
    assert parameter_counts(config)["total"] == count_params(shapes)
    assert shapes["layer_0"]["mlp_in_kernel"].value.shape == (width, 2, config.model.mlp_dim)


def test_config_refuses_unknown_options():
    with pytest.raises(ValueError, match="codebook=999"):
        configlib.load_config(f"{CONFIG}:codebook=999")
    with pytest.raises(ValueError, match="unknown size"):
        configlib.load_config(f"{CONFIG}:size=9x9")


def _layer(i):
    p = f"layer_{i}"
    return {f"{p}/qkv_kernel": P("fsdp", None, "tensor"), f"{p}/out_kernel": P("tensor", None, "fsdp"),
            f"{p}/mlp_in_kernel": P("fsdp", None, "tensor"), f"{p}/mlp_out_kernel": P("tensor", "fsdp"),
            f"{p}/attention_norm/scale": P("fsdp"), f"{p}/mlp_norm/scale": P("fsdp")}


# T on data=2, fsdp=2, tensor=2: the contract's rules applied to the boxed names; the
# vocabulary (514 = 512 codes + END + PAD) splits over tensor=2.
GOLDEN_T = {
    "token_embedding": P("tensor", "fsdp"), "head": P("fsdp", "tensor"),
    "text_projection": P(None, None, "fsdp"), "null_prefix": P(None, "fsdp"),
    "final_norm/scale": P("fsdp"), **_layer(0), **_layer(1),
}


def test_golden_parameter_shardings():
    config = configlib.load_config(f"{CONFIG}:size=T")
    task = loop.load_task(config)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    tx, _ = optim.make_optimizer(config.train)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in task.dummy_batch(8).items()}
    _, shardings = state.abstract_state(task, tx, jax.random.PRNGKey(0), spec, mesh)
    assert state.param_specs(shardings) == GOLDEN_T


def _stand_in_batch(config, b=8, seed=0):
    rng = np.random.default_rng(seed)
    n, cb = int(config.model.max_tokens), int(config.model.codebook_size)
    targets = np.full((b, n + 1), prefix_lm.pad_id(cb), np.int32)
    for i, length in enumerate(rng.integers(5, n + 1, b)):
        targets[i, :length] = rng.integers(0, cb, length)
        targets[i, length] = prefix_lm.end_id(cb)
    text = rng.standard_normal((b, 3, int(config.model.text_embed_dim))).astype(np.float32)
    return {"targets": targets, "text_embedding": text}


def _five_losses(devices, **mesh):
    config = loop.add_trainer_defaults(configlib.load_config(f"{CONFIG}:size=T,runlocal"))
    config.train.batch_size = 8
    config.mesh.update(mesh)
    trainer = loop.Trainer(config, "unused", devices=devices, example_batch=_stand_in_batch(config))
    step = trainer.compile()
    st = trainer.init_state()
    out = []
    for i in range(5):
        key = jax.device_put(jax.random.fold_in(jax.random.PRNGKey(3), i), trainer.replicated)
        st, metrics = step(st, trainer.example, key)
        out.append((float(metrics["loss"]), float(metrics["accuracy"])))
    return np.array(out)


def test_sharded_and_single_device_losses_agree():
    sharded = _five_losses(None, data=2, fsdp=2, tensor=2)
    single = _five_losses(jax.devices()[:1], data=1, fsdp=1, tensor=1)
    np.testing.assert_allclose(sharded, single, rtol=0, atol=1e-5)
    assert len(set(np.round(single[:, 0], 6))) == 5
    assert single[0, 0] == pytest.approx(np.log(514), rel=0.05)  # untrained: about uniform over the vocabulary


def test_analytic_flops_match_xla_cost_analysis():
    # d 128, 4 heads, SwiGLU 352, codebook 512: the non-matmul work XLA also counts (norms,
    # softmax, log-softmax over the vocabulary, AdamW, EMA) is a few percent.
    config = loop.add_trainer_defaults(configlib.load_config(f"{CONFIG}:size=T,runlocal"))
    config.model.update(num_layers=2, d_model=128, num_heads=4, mlp_dim=352)
    config.train.batch_size = 8
    config.mesh.data = 1
    trainer = loop.Trainer(config, "unused", devices=jax.devices()[:1], example_batch=_stand_in_batch(config))
    xla = flops.xla_flops(trainer.compile())
    analytic = trainer.task.flops_per_example() * config.train.batch_size
    assert abs(xla - analytic) / analytic < 0.10, (xla, analytic)
    assert abs(xla - analytic / 3) / analytic > 0.10  # the backward pass is counted


# ----------------------------------------------------------------------------- real inputs

def _write_inputs(root):
    """Toy HandX data, a token file per split (random codes, one clip shorter) and a caption
    embeddings file: what `handx tokenize` and the text tower stage leave behind."""
    from handx_jax.autoregressive.tokens import TokenSet, save_tokens, tokens_path
    from handx_jax.data import handx_format
    from handx_jax.diffusion import checks
    from handx_jax.text.tokenizer import ROLES, save_text_embeddings

    data = str(root / "data")
    checks.write_toy_dataset(data, num_train=24, num_test=16)
    rng = np.random.default_rng(0)
    captions = {r: set() for r in ROLES}
    tokens = {}
    for split in ("train", "test"):
        clips = handx_format.load_handx(os.path.join(data, f"{split}_can_pos_all_wotextfeat.npz"))
        names = sorted(clips)
        lengths = np.full(len(names), 30, np.int32)
        lengths[1] = 17
        codes = np.full((len(names), 30), -1, np.int32)
        for i, n in enumerate(lengths):
            codes[i, :n] = rng.integers(0, 512, n)
        tokens[split] = TokenSet(np.asarray(names), codes, lengths, {"fsq_key": FAKE_KEY})
        save_tokens(tokens_path(data, FAKE_KEY, split), tokens[split])
        for clip in clips.values():
            for r, key in zip(ROLES, ("left_annotation", "right_annotation", "interaction_annotation")):
                captions[r].update(clip[key])
    emb_path = str(root / "captions.npz")
    save_text_embeddings(emb_path, {r: (sorted(c), rng.standard_normal((len(c), 32)).astype(np.float32))
                                    for r, c in captions.items()}, {})
    overrides = {"data.dir": data, "model.fsq_key": FAKE_KEY, "model.text_embeddings_path": emb_path,
                 "model.text_embed_dim": 32}
    return data, tokens, overrides


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return _write_inputs(tmp_path_factory.mktemp("lm_inputs"))


def _config(overrides, *extra):
    config = loop.add_trainer_defaults(configlib.load_config(f"{CONFIG}:size=T,runlocal,text=file"))
    return configlib.apply_overrides(config, [f"{k}={v}" for k, v in overrides.items()] + list(extra))


def test_token_pipeline_batches_and_resumes(inputs):
    data, tokens, overrides = inputs
    task = loop.load_task(_config(overrides))
    it = iter(task.train_inputs(batch_size=4, seed=0, shard_index=0, shard_count=1))
    first = next(it)
    assert sorted(first) == ["clip_index", "targets", "text_embedding"]
    assert first["targets"].shape == (4, 31) and first["text_embedding"].shape == (4, 3, 32)
    end, pad = prefix_lm.end_id(512), prefix_lm.pad_id(512)
    from handx_jax.data import pipeline, tfds_builder
    names = pipeline.FeatureCache.ensure(tfds_builder.ensure_built(data), "train", "joint_pos_w_scalar_rot").names
    by_name = {str(n): i for i, n in enumerate(tokens["train"].names)}
    for row, clip in zip(first["targets"], first["clip_index"]):
        k = by_name[names[clip]]
        n = tokens["train"].lengths[k]
        np.testing.assert_array_equal(row[:n], tokens["train"].codes[k, :n])
        assert row[n] == end and (row[n + 1:] == pad).all()
    saved = it.get_state()
    ahead = [next(it) for _ in range(3)]
    it.set_state(saved)
    again = [next(it) for _ in range(3)]
    for a, b in zip(ahead, again):
        np.testing.assert_array_equal(a["targets"], b["targets"])
    evals = list(iter(task.eval_inputs(batch_size=8, shard_index=0, shard_count=1)))
    assert len(evals) == 2 and (evals[0]["clip_index"] == np.arange(8)).all()


def test_missing_tokens_name_the_clip(inputs, tmp_path):
    from handx_jax.autoregressive.lm_task import token_rows

    with pytest.raises(ValueError, match="toy_train_0003"):
        token_rows(["toy_train_0002", "toy_train_0003"], np.asarray(["toy_train_0002"]), "x.npz")


STEPS = 200


def _train_command(workdir, overrides, *extra):
    items = {**overrides, "train.steps": STEPS, "train.ckpt_every": 10, "train.log_every": 1, "mesh.data": 1,
             "train.batch_size": 4, "train.progress": False}
    return [sys.executable, "-m", "handx_jax.commands.train", "--config", f"{CONFIG}:size=T,runlocal,text=file",
            "--workdir", str(workdir), *[f"--config.{k}={v}" for k, v in items.items()], *extra]


def test_sigkill_then_resume_is_bitwise_identical(inputs, tmp_path):
    _, _, overrides = inputs
    full, cut = tmp_path / "full", tmp_path / "cut"
    sp.run(_train_command(full, overrides), timeout=400)
    sp.kill_after_checkpoint(_train_command(cut, overrides), cut, step=10, last_step=STEPS, poll=0.01)
    sp.run(_train_command(cut, overrides), timeout=400)
    for ema in (False, True):
        _, pa, sa = checkpoint.restore_params(str(full), ema=ema)
        _, pb, sb = checkpoint.restore_params(str(cut), ema=ema)
        assert sa == sb == STEPS
        for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(pa), jax.tree_util.tree_leaves_with_path(pb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
    ma, mb = metrics_log.read_metrics(str(full)), metrics_log.read_metrics(str(cut))
    train_a = [r["loss"] for r in ma if "loss" in r]
    assert train_a == [r["loss"] for r in mb if "loss" in r] and len(train_a) == STEPS
    assert train_a[-1] < train_a[0]
    assert any("eval/loss" in r for r in mb)  # held-out token NLL logged after the last step


def test_workdir_sampler_end_to_end(inputs, tmp_path):
    """A 2-step FSQ tokenizer, a 2-step LM (tokenizing the data first), then text -> joints."""
    from handx_jax.autoregressive.fsq_run import FsqRun
    from handx_jax.autoregressive.sampling import WorkdirSampler
    from handx_jax.diffusion import checks

    data, _, overrides = inputs
    fsq_config = loop.add_trainer_defaults(configlib.load_config("configs/fsq.py:T,runlocal"))
    fsq_config = configlib.apply_overrides(fsq_config, [f"data.dir={data}", "train.steps=2", "train.ckpt_every=2",
                                                        "train.batch_size=4", "mesh.data=1", "train.progress=False", "train.eval_every=-1"])
    fsq_dir = str(tmp_path / "fsq")
    loop.train(fsq_config, fsq_dir, devices=jax.devices()[:1])
    from handx_jax.autoregressive.tokens import tokens_path
    assert not os.path.exists(tokens_path(data, FsqRun(fsq_dir).key, "train"))  # the LM's task makes them
    lm_overrides = {k: v for k, v in overrides.items() if k != "model.fsq_key"}
    config = _config(lm_overrides, f"model.fsq_workdir={fsq_dir}", "train.steps=2", "train.ckpt_every=2", "train.eval_every=-1",
                     "train.batch_size=4", "mesh.data=1", "train.progress=False")
    lm_dir = str(tmp_path / "lm")
    loop.train(config, lm_dir, devices=jax.devices()[:1])

    sampler = WorkdirSampler(lm_dir)
    texts = [(checks.LEFT[a], checks.RIGHT[b], checks.RELATION[c]) for a, b, c in checks.COMBOS[:2]]
    a = sampler(texts, num_per_text=2, seed=0, batch_size=3)
    assert a.shape == (4, 60, 2, 21, 3) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, sampler(texts, num_per_text=2, seed=0, batch_size=3))
    assert np.abs(a - sampler(texts, num_per_text=2, seed=1, batch_size=3)).max() > 0
    long = sampler.long_horizon(texts, num=2, context=10)
    assert long.shape == (2, 60 + 50, 2, 21, 3) and np.isfinite(long).all()
