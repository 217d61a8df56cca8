"""FSQ tokenizer: quantiser, Haar patcher, model shapes, configs, golden shardings, sharded vs
single-device losses, FLOPs against XLA, and bitwise resume after SIGKILL."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from handx_jax import configlib
from handx_jax.autoregressive import fsq
from handx_jax.autoregressive.fsq_task import code_statistics
from handx_jax.train import checkpoint, loop, metrics_log, optim, sharding, state
from handx_jax.train.flops import xla_flops
from tests.train import subprocess_util as sp

CONFIG = os.path.join(sp.REPO, "configs", "fsq.py")
HANDX_ACTUAL = {512: 512, 1024: 1000, 2048: 1920, 4096: 4375, 65536: 64000}  # products of HandX's level sets


# ----------------------------------------------------------------------- quantiser --

@pytest.mark.parametrize("nominal", sorted(fsq.LEVELS))
def test_every_level_set_gives_exactly_its_product_of_codes(nominal):
    levels = fsq.LEVELS[nominal]
    assert fsq.codebook_size(levels) == HANDX_ACTUAL[nominal]
    # Latents on a grid wide enough to reach every rounding bucket of every channel.
    # (step 0.2 is finer than the narrowest bucket, about 1 / 3.5 in latent units for 8 levels)
    grid = np.linspace(-2.5, 2.5, 26, dtype=np.float32)
    if len(levels) <= 4:
        z = np.stack(np.meshgrid(*[grid] * len(levels), indexing="ij"), -1).reshape(-1, len(levels))
    else:
        z = np.random.default_rng(0).choice(grid, size=(100_000, len(levels))).astype(np.float32)
    normalized, rounded = fsq.quantize(jnp.asarray(z), levels)
    ids = np.asarray(fsq.codes_to_indices(rounded, levels))
    assert ids.min() >= 0 and ids.max() < fsq.codebook_size(levels)
    for d, lv in enumerate(levels):  # each channel takes exactly `lv` integer values
        assert len(np.unique(np.asarray(rounded)[:, d])) == lv
    if len(levels) <= 4:
        assert len(np.unique(ids)) == fsq.codebook_size(levels)
    # ids -> normalised codes is the inverse of the quantiser's own output
    np.testing.assert_allclose(np.asarray(fsq.indices_to_normalized(ids, levels)), np.asarray(normalized), atol=1e-6)
    assert np.abs(np.asarray(normalized)).max() <= 1.0


def test_straight_through_rounding_passes_the_bound_gradient():
    levels = (8, 5, 5, 5)
    z = jnp.asarray(np.random.default_rng(1).standard_normal((16, 4)), jnp.float32)
    grad_q = jax.grad(lambda z: jnp.sum(fsq.quantize(z, levels)[0] * jnp.arange(1.0, 5.0)))(z)
    half = np.floor(np.asarray(levels) / 2.0)
    grad_b = jax.grad(lambda z: jnp.sum(fsq.bound(z, levels) / half * jnp.arange(1.0, 5.0)))(z)
    np.testing.assert_allclose(np.asarray(grad_q), np.asarray(grad_b), rtol=1e-6)
    assert np.all(np.abs(np.asarray(grad_q)) > 0)


def test_code_statistics_count_valid_tokens_only():
    codes = jnp.array([[0, 1, 1, 3], [3, 3, 2, 2]], jnp.int32)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], jnp.float32)
    usage, perplexity = code_statistics(codes, mask, 8)
    assert float(usage) == pytest.approx(3 / 8)   # codes 0, 1, 3 (2 is padding only)
    p = np.array([1, 2, 3]) / 6
    assert float(perplexity) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-6)


# -------------------------------------------------------------------- Haar patcher --

@pytest.mark.parametrize("patch", [1, 2, 4])
def test_haar_patcher_has_an_exact_orthonormal_inverse(patch):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 16, 5)), jnp.float32)
    y = fsq.haar_patch(x, patch)
    assert y.shape == (3, 16 // patch, 5 * patch)
    np.testing.assert_allclose(np.asarray(fsq.haar_unpatch(y, patch)), np.asarray(x), atol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(y ** 2)), float(jnp.sum(x ** 2)), rtol=1e-5)  # energy kept
    if patch == 2:  # first frame pair of channel 0: mean and difference, scaled by sqrt(2)
        a, b = float(x[0, 0, 0]), float(x[0, 1, 0])
        assert float(y[0, 0, 0]) == pytest.approx((a + b) / np.sqrt(2), abs=1e-6)
        assert float(y[0, 0, 5]) == pytest.approx((a - b) / np.sqrt(2), abs=1e-6)
    with pytest.raises(ValueError, match="power of two"):
        fsq.haar_patch(x, 3)


# ------------------------------------------------------------------------- model --

@pytest.mark.parametrize("arg,downsample", [("T", 2), ("T,down=2", 4), ("T,patch=2", 4)])
def test_model_shapes_and_decode_of_encode_matches_the_forward_pass(arg, downsample):
    config = configlib.load_config(f"{CONFIG}:{arg}")
    config.data.seq_len = 16
    model = fsq.model_from_config(config)
    assert model.downsample == downsample
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 16, 168)), jnp.float32)
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    recon, ids = model.apply({"params": params}, x)
    assert recon.shape == x.shape and ids.shape == (2, 16 // downsample) and ids.dtype == jnp.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < fsq.codebook_size(model.levels)
    np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, x, method="encode")), np.asarray(ids))
    decoded = model.apply({"params": params}, ids, method="decode")
    np.testing.assert_allclose(np.asarray(decoded), np.asarray(recon), atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple of the downsampling factor"):
        model.apply({"params": params}, x[:, :15])


SIZES = configlib.load_module(CONFIG).SIZES


@pytest.mark.parametrize("size,nominal", [(s, n) for s in SIZES for n in fsq.LEVELS])
def test_every_fsq_config_parses_and_builds(size, nominal):
    for arg in (f"{size},codebook={nominal}", f"size={size},codebook={nominal},runlocal"):
        config = configlib.load_config(f"{CONFIG}:{arg}")
        assert config.size == size and tuple(config.model.levels) == fsq.LEVELS[nominal]
        task = loop.load_task(config)
        assert task.codebook_size == HANDX_ACTUAL[nominal]
        params = jax.eval_shape(task.init_params, jax.random.PRNGKey(0))
        assert state.count_params(nn.unbox(params)) > 0
        assert task.flops_per_example() > 0


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="codebook=777"):
        configlib.load_config(f"{CONFIG}:T,codebook=777")
    with pytest.raises(ValueError, match="unknown option"):
        configlib.load_config(f"{CONFIG}:T,bogus=1")
    with pytest.raises(ValueError, match="patch=3"):
        configlib.load_config(f"{CONFIG}:T,patch=3")
    assert configlib.load_config(f"{CONFIG}").size == "S"


@pytest.mark.parametrize("arg", ["T", "S"])
def test_analytic_forward_flops_match_xla(arg):
    """XLA's count skips the zero-padded taps at the clip ends (up to 9 of 3 x 30 per dilated
    convolution at size S), which the analytic count includes: they agree within 5 %."""
    config = configlib.load_config(f"{CONFIG}:{arg}")
    model = fsq.model_from_config(config)
    x = jax.ShapeDtypeStruct((4, 60, 168), jnp.float32)
    params = nn.unbox(jax.eval_shape(lambda r: model.init(r, jnp.zeros((4, 60, 168)))["params"], jax.random.PRNGKey(0)))
    compiled = jax.jit(lambda p, x: model.apply({"params": p}, x)[0]).lower(params, x).compile()
    measured = xla_flops(compiled) / 4
    analytic = fsq.forward_flops(config)
    assert 0.95 < measured / analytic <= 1.0 + 1e-3


# ------------------------------------------------------------- sharding and losses --

def _conv(name, axes):
    out = axes[-1] if axes[-1] else None
    return {f"{name}/kernel": P(*axes) if axes[-1] else P(*axes[:-1]), f"{name}/bias": P(out) if out else P()}


GOLDEN_T = {
    **_conv("encoder/conv_in", (None, None, "fsdp")),
    **_conv("encoder/down_0", (None, None, "fsdp")),
    **_conv("encoder/res_0_0/conv_dilated", (None, "fsdp", "tensor")),
    **_conv("encoder/res_0_0/conv_out", (None, "tensor", "fsdp")),
    **_conv("encoder/conv_code", (None, "fsdp", None)),
    **_conv("decoder/conv_in", (None, None, "fsdp")),
    **_conv("decoder/res_0_0/conv_dilated", (None, "fsdp", "tensor")),
    **_conv("decoder/res_0_0/conv_out", (None, "tensor", "fsdp")),
    **_conv("decoder/up_0", (None, None, "fsdp")),
    **_conv("decoder/conv_mid", (None, None, "fsdp")),
    **_conv("decoder/conv_out", (None, "fsdp", None)),
}


def test_golden_fsq_parameter_shardings():
    """Every parameter of size T on data=2, fsdp=2, tensor=2: convolution kernels are
    (taps, in, out); channels follow the contract's rules (embed -> fsdp, mlp -> tensor)."""
    config = configlib.load_config(f"{CONFIG}:T")
    task = loop.load_task(config)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    tx, _ = optim.make_optimizer(config.train)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in task.dummy_batch(8).items()}
    _, shardings = state.abstract_state(task, tx, jax.random.PRNGKey(0), spec, mesh)
    assert state.param_specs(shardings) == GOLDEN_T


def _losses(data_dir, devices, **mesh):
    config = loop.add_trainer_defaults(configlib.load_config(f"{CONFIG}:T,runlocal"))
    config.data.dir = data_dir
    config.train.batch_size = 8
    config.train.warmup_steps = 1
    config.mesh.update(mesh)
    task = loop.load_task(config)
    batch = task.dummy_batch(8)
    rng = np.random.default_rng(0)
    batch["motion"] = rng.standard_normal(batch["motion"].shape).astype(np.float32)
    batch["mask"][:, 50:] = 0.0
    trainer = loop.Trainer(config, "unused", devices=devices, example_batch=batch)
    step = trainer.compile()
    st = trainer.init_state()
    out = []
    for i in range(4):
        key = jax.device_put(jax.random.fold_in(jax.random.PRNGKey(3), i), trainer.replicated)
        st, metrics = step(st, trainer.example, key)
        out.append([float(metrics[k]) for k in ("loss", "loss_rec", "loss_bone", "usage")])
    return np.array(out)


def test_fsq_sharded_and_single_device_losses_agree(tiny_data):
    sharded = _losses(tiny_data, None, data=2, fsdp=2, tensor=2)
    single = _losses(tiny_data, jax.devices()[:1], data=1, fsdp=1, tensor=1)
    np.testing.assert_allclose(sharded, single, rtol=0, atol=1e-5)
    assert np.all(np.diff(single[1:, 0]) < 0)   # it trains (step 1 runs at warmup's learning rate 0)


# ------------------------------------------------------------------ exact resume --

STEPS = 40
COMMON = (f"train.steps={STEPS}", "train.ckpt_every=10", "train.log_every=1", "mesh.data=1", "train.batch_size=8",
          "train.keep_checkpoints=2", "train.progress=False", "train.eval_every=-1")


def _command(workdir, data_dir, *extra):
    return [sys.executable, "-m", "handx_jax.commands.train", "--config", f"{CONFIG}:T,runlocal",
            "--workdir", str(workdir), *[f"--config.{o}" for o in COMMON + extra], f"--config.data.dir={data_dir}"]


def test_fsq_sigkill_then_resume_is_bitwise_identical(tiny_data, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    uninterrupted = subprocess.Popen(_command(full, tiny_data), cwd=sp.REPO, env=sp.env(1),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Synchronous checkpoints (numerics unchanged) keep the run busy long enough to be killed mid-way.
    sp.kill_after_checkpoint(_command(killed, tiny_data, "train.async_checkpoint=False"), killed, step=10,
                             last_step=STEPS, timeout=240)
    _, err = uninterrupted.communicate(timeout=240)
    assert uninterrupted.returncode == 0, err[-3000:]
    sp.run(_command(killed, tiny_data))
    for ema in (False, True):
        _, pa, sa = checkpoint.restore_params(str(full), ema=ema)
        _, pb, sb = checkpoint.restore_params(str(killed), ema=ema)
        assert sa == sb == STEPS
        for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(pa), jax.tree_util.tree_leaves_with_path(pb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
    ma, mb = metrics_log.read_metrics(str(full)), metrics_log.read_metrics(str(killed))
    train_a = [r for r in ma if "loss" in r]
    train_b = [r for r in mb if "loss" in r]
    assert [r["step"] for r in train_b] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in train_a] == [r["loss"] for r in train_b]
