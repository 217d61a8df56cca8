"""The evaluator model, task and frozen wrapper at size T (no dataset needed)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handx_jax import configlib
from handx_jax.data import normalization
from handx_jax.eval import evaluator, evaluator_task
from handx_jax.models import evaluator as evaluator_model
from handx_jax.models.transformer import count_params
from handx_jax.text import tokenizer as tokenizer_lib


def _config(arg="size=T"):
    return configlib.load_config(f"configs/evaluator.py:{arg}")


@pytest.mark.parametrize("size", ["T", "XS", "S"])
def test_configs_parse_and_build(size):
    config = _config(f"size={size},runlocal")
    task = evaluator_task.EvaluatorTask(config)
    shapes = jax.eval_shape(lambda r: task.init_params(r), jax.random.PRNGKey(0))
    assert count_params(shapes) > 0
    assert task.flops_per_example() > 0
    assert config.model.latent_dim == 256 and config.data.representation == "joint_pos"


def test_config_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown size"):
        _config("size=Q")
    with pytest.raises(ValueError, match="unknown option"):
        _config("layers=3")


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(6, 8))
    m = rng.normal(size=(6, 8))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    loss, terms = evaluator_model.info_nce(jnp.asarray(t), jnp.asarray(m), 0.07)
    logits = t @ m.T / 0.07

    def ce(z):
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(-(np.diag(z) - np.log(np.exp(z).sum(axis=1))))

    want = 0.5 * (ce(logits) + ce(logits.T))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(terms["batch_r1"]) == pytest.approx(np.mean(np.argmax(logits, 1) == np.arange(6)))


def _tiny_tokenizer(tmp_path):
    words = ["left", "right", "thumb", "index", "bends", "opens", "hands", "apart", "touch", "palm"]
    rng = np.random.default_rng(0)
    caps = [" ".join(rng.choice(words, 5)) for _ in range(200)]
    tokenizer_lib.train_tokenizer(caps, str(tmp_path / "spm"), 60)
    return tokenizer_lib.load_tokenizer(str(tmp_path))


def test_training_steps_align_matched_pairs():
    """A few Adam steps on one batch make matched pairs retrievable (the loss can learn)."""
    config = _config()
    task = evaluator_task.EvaluatorTask(config)
    rng = np.random.default_rng(1)
    batch = task.dummy_batch(8)
    batch["motion"] = rng.normal(size=batch["motion"].shape).astype(np.float32)
    for role in tokenizer_lib.ROLES:
        batch[f"tokens_{role}"] = rng.integers(2, 60, size=batch[f"tokens_{role}"].shape).astype(np.int32)
        batch[f"tokens_{role}_mask"] = np.ones_like(batch[f"tokens_{role}_mask"])
    params = nn.meta.unbox(jax.jit(task.init_params)(jax.random.PRNGKey(0), batch))
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, opt):
        (loss, terms), grads = jax.value_and_grad(
            lambda p: task.loss(p, batch, jax.random.PRNGKey(0)), has_aux=True)(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), opt, loss, terms

    opt = tx.init(params)
    params, opt, first, _ = step(params, opt)
    for _ in range(40):
        params, opt, loss, terms = step(params, opt)
    assert float(loss) < 0.5 * float(first)
    assert float(terms["batch_r1"]) == 1.0


def test_frozen_evaluator_encodes_in_fixed_chunks(tmp_path):
    config = _config()
    params = jax.jit(evaluator_task.EvaluatorTask(config).init_params)(jax.random.PRNGKey(0))
    stats = normalization.Stats(np.zeros(126, np.float32), np.full(126, 0.1, np.float32))
    ev = evaluator.Evaluator(config, params, _tiny_tokenizer(tmp_path), stats, batch_size=4)
    rng = np.random.default_rng(2)
    motion = (0.05 * rng.normal(size=(7, 60, 2, 21, 3))).astype(np.float32)
    emb = ev.encode_motion(motion)
    assert emb.shape == (7, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Chunking and padding do not change an item's embedding.
    np.testing.assert_allclose(ev.encode_motion(motion[5:6])[0], emb[5], atol=1e-5)
    texts = [("left thumb bends", "right index opens", "hands apart")] * 5 + [("palm", "touch", "left")]
    temb = ev.encode_text(texts)
    assert temb.shape == (6, 256)
    np.testing.assert_allclose(temb[0], temb[4], atol=1e-6)
    assert np.linalg.norm(temb[0] - temb[5]) > 1e-3
    with pytest.raises(ValueError, match="triple"):
        ev.encode_text([("only", "two")])
    with pytest.raises(ValueError, match=r"\(N, T, 2, 21, 3\)"):
        ev.encode_motion(motion[0])
