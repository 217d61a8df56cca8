"""Geometric loss terms on predicted joints: zero at the data, gradients, emphasis, wiring."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from handx_jax import configlib
from handx_jax.data import normalization, representations
from handx_jax.diffusion import losses
from handx_jax.diffusion.task import DiffusionTask
from handx_jax.hand import geometry, kinematics

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "diffusion.py")


def _motion(seed=0, b=2, t=6):
    rng = np.random.default_rng(seed)
    lo, hi = kinematics.FLEXION_LIMITS
    hands = []
    for left, x in ((True, -0.05), (False, 0.05)):
        params = kinematics.HandParams(
            flexion=rng.uniform(lo, hi, (b, t, 5, 3)), abduction=np.zeros((b, t, 5)),
            wrist_rot=np.zeros((b, t, 3)), wrist_pos=np.array([x, 0.0, 0.0]) + rng.normal(scale=0.01, size=(b, t, 3)),
            left=np.full((b, t), left))
        hands.append(kinematics.forward_kinematics(params))
    return np.stack(hands, axis=2).astype(np.float32)


def test_distances_match_the_geometry_layer():
    motion = _motion()
    intra, inter = losses.tip_distances(jnp.asarray(motion))
    np.testing.assert_allclose(intra, geometry.intra_tip_distances(motion), atol=1e-6)
    np.testing.assert_allclose(np.asarray(inter).reshape(2, 6, 5, 5), geometry.inter_tip_distances(motion), atol=1e-6)
    other, own = losses.tip_palm_distances(jnp.asarray(motion))
    np.testing.assert_allclose(other, geometry.tip_to_other_palm(motion, nearest=1), atol=1e-5)
    # own palm: a direct loop over the fixed palm points
    pts = geometry.palm_points(motion)  # (B, T, 2, 100, 3)
    tips = motion[..., geometry.TIPS, :]
    loop = np.zeros(own.shape)
    for h in range(2):
        for k in range(5):
            loop[:, :, h, k] = np.linalg.norm(pts[:, :, h] - tips[:, :, h, k, None], axis=-1).min(-1)
    np.testing.assert_allclose(own, loop, atol=1e-5)


def test_zero_at_the_data_and_gradients_flow():
    motion = jnp.asarray(_motion())
    mask = jnp.ones(motion.shape[:2])
    terms = losses.geometric_losses(motion, motion, mask)
    for name in ("loss_tip", "loss_palm", "loss_bone"):
        assert float(terms[name]) == 0.0
    noisy = motion + 0.003 * jax.random.normal(jax.random.key(0), motion.shape)
    for name in ("loss_tip", "loss_palm", "loss_bone"):
        grad = jax.grad(lambda x: losses.geometric_losses(x, motion, mask)[name])(noisy)
        assert float(losses.geometric_losses(noisy, motion, mask)[name]) > 0
        assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


def test_masked_frames_do_not_count():
    motion = jnp.asarray(_motion())
    bad = motion.at[:, 3:].add(0.05)
    mask = jnp.asarray(np.array([[1, 1, 1, 0, 0, 0]] * 2, np.float32))
    terms = losses.geometric_losses(bad, motion, mask)
    assert all(float(v) == 0.0 for v in terms.values())


def test_contact_distances_weigh_more():
    w = losses.contact_weight(jnp.array([0.01, 0.02, 0.03, 0.08]), 0.02, 4.0)
    assert float(w[0]) == float(w[1]) == 5.0  # at or below the threshold: full emphasis
    assert 1.0 < float(w[2]) < 5.0 and abs(float(w[3]) - 1.0) < 1e-6
    # the same 5 mm error on a touching pair costs more than on a far pair
    d_true = jnp.array([[[0.015, 0.06]]])
    err = losses._weighted_distance_mse(d_true + 0.005, d_true, 0.02, 4.0, jnp.ones((1, 1)))
    near = losses._weighted_distance_mse(d_true.at[..., 1].set(0.06) + jnp.array([0.005, 0.0]), d_true, 0.02, 4.0,
                                         jnp.ones((1, 1)))
    far = losses._weighted_distance_mse(d_true + jnp.array([0.0, 0.005]), d_true, 0.02, 4.0, jnp.ones((1, 1)))
    assert float(near) > 4 * float(far) and float(err) == float(near + far)


def test_task_adds_the_weighted_terms():
    config = configlib.load_config(CONFIG + ":size=T")
    config.diffusion.loss_tip, config.diffusion.loss_palm, config.diffusion.loss_bone = 0.1, 0.2, 0.3
    task = DiffusionTask(config)
    task._stats = normalization.Stats(np.zeros(168, np.float32), np.full(168, 0.1, np.float32))
    batch = task.dummy_batch(2)
    motion = _motion(t=batch["motion"].shape[1])
    batch["motion"] = np.asarray(representations.to_features(motion, "joint_pos_w_scalar_rot")) / 0.1
    np.testing.assert_allclose(task.joints(jnp.asarray(batch["motion"])),
                               representations.to_joints(batch["motion"] * 0.1, "joint_pos_w_scalar_rot"), atol=1e-6)
    params = nn.meta.unbox(task.init_params(jax.random.key(0), batch))
    total, terms = jax.jit(task.loss)(params, batch, jax.random.key(1))
    assert {"loss_tip", "loss_palm", "loss_bone"} <= set(terms)
    base = sum(task.loss_weights[k] * terms[f"loss_{k}"] for k in ("rep", "vel", "acc"))
    geo = 0.1 * terms["loss_tip"] + 0.2 * terms["loss_palm"] + 0.3 * terms["loss_bone"]
    np.testing.assert_allclose(total, base + geo, rtol=1e-5)
    grads = jax.grad(lambda p: task.loss(p, batch, jax.random.key(1))[0])(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
