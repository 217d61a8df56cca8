import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax.data import store
from handx_jax.eval import metrics
from handx_jax.hand import geometry, kinematics, projection


def _fk_motion(seed=0, n=2, t=8):  # one shape for every test: one compilation
    """Smooth FK clips (n, t, 2, 21, 3) inside the joint limits, both hands, own scale each."""
    rng = np.random.default_rng(seed)
    lo, hi = kinematics.FLEXION_LIMITS
    alo, ahi = kinematics.ABDUCTION_LIMITS
    tt = np.linspace(0.0, 1.0, t)[None, :]

    def wave(shape):
        base = rng.uniform(0.1, 0.9, (n, 1) + shape)
        amp = rng.uniform(0.0, 0.1, (n, 1) + shape)
        return base + amp * np.sin(4 * tt.reshape((1, t) + (1,) * len(shape)) + rng.uniform(0, 6, (n, 1) + shape))

    hands = []
    for left in (True, False):
        params = kinematics.HandParams(
            flexion=lo + (hi - lo) * wave((5, 3)), abduction=alo + (ahi - alo) * wave((5,)),
            wrist_rot=rng.normal(scale=0.6, size=(n, 1, 3)) + 0.05 * wave((3,)),
            wrist_pos=rng.normal(scale=0.1, size=(n, 1, 3)) + 0.02 * wave((3,)),
            scale=rng.uniform(0.9, 1.1, (n, 1)) * np.ones((n, t)), left=np.full((n, t), left))
        hands.append(kinematics.forward_kinematics(params))
    return np.stack(hands, axis=2).astype(np.float32)


def test_valid_fk_motion_projects_to_itself():
    motion = _fk_motion()
    res = projection.project(motion)
    # Thumb poses whose MCP reading would fall outside the metric are capped; none here.
    assert metrics.joint_limit_violation_rate(motion) == 0.0
    assert res.error.max() < 1e-5  # metres: 0.01 mm
    assert np.abs(res.motion - motion).max() < 5e-5


def test_bone_lengths_constant_and_limits_respected_on_garbage():
    rng = np.random.default_rng(1)
    motion = _fk_motion(seed=1) + rng.normal(scale=0.01, size=(2, 8, 2, 21, 3)).astype(np.float32)
    motion[0, :, 1, 17] += 0.05  # a stretched index finger
    res = projection.project(motion)
    lengths = geometry.bone_lengths(res.motion.astype(np.float64))  # (N, T, 2, 20)
    dev = np.abs(lengths - lengths.mean(axis=1, keepdims=True))
    assert dev.max() < 64 * np.spacing(np.float32(np.abs(res.motion).max()))  # float32 rounding
    assert np.allclose(lengths[:, 0], res.lengths, atol=1e-5)
    assert metrics.joint_limit_violation_rate(motion) > 0  # the input breaks the limits ...
    assert metrics.joint_limit_violation_rate(res.motion) == 0.0  # ... the projection does not
    lo, hi = kinematics.FLEXION_LIMITS
    assert np.all(res.flexion >= lo - 1e-6) and np.all(res.flexion <= hi + 1e-6)
    alo, ahi = kinematics.ABDUCTION_LIMITS
    assert np.all(res.abduction >= alo - 1e-6) and np.all(res.abduction <= ahi + 1e-6)
    # The fit follows the input closely (the noise is 1 cm per coordinate).
    assert 0 < res.error.mean() < 0.02


def test_thumb_reading_outside_metric_is_capped():
    # A thumb pose inside the hand model's box whose HandX MCP reading is below -45 degrees.
    flex = np.zeros((5, 3))
    abd = np.zeros(5)
    rng = np.random.default_rng(0)
    lo, hi = kinematics.FLEXION_LIMITS
    alo, ahi = kinematics.ABDUCTION_LIMITS
    cand_flex = rng.uniform(lo, hi, (4000, 5, 3))
    cand_abd = rng.uniform(alo, ahi, (4000, 5))
    joints = kinematics.local_joints(cand_flex, cand_abd)
    reading = geometry.flexion_angles(np.stack([joints * [-1, 1, 1], joints], 1), dead_zone=False)[:, 1, 0, 1]
    bad = int(np.argmin(reading))
    assert reading[bad] < np.deg2rad(-45)
    flex, abd = cand_flex[bad], cand_abd[bad]
    hand = kinematics.forward_kinematics(kinematics.HandParams(flex, abd, np.zeros(3), np.zeros(3)))
    motion = np.broadcast_to(np.stack([hand * [-1, 1, 1], hand])[None, None], (2, 8, 2, 21, 3)).astype(np.float32)
    res = projection.project(motion)
    assert metrics.joint_limit_violation_rate(res.motion) == 0.0


def test_analytic_jacobian_matches_autodiff():
    rng = np.random.default_rng(3)
    angles = jnp.asarray(rng.uniform(projection._LOWER, projection._UPPER), jnp.float32)
    rot = kinematics.rotation_matrix(jnp.asarray(rng.normal(size=3), jnp.float32))
    lengths = jnp.asarray(projection.REST_LENGTHS * rng.uniform(0.8, 1.2, 20), jnp.float32)

    def fk(q):
        return projection.right_hand_fk(q[6:], rot @ kinematics.rotation_matrix(q[:3]), q[3:6], lengths)

    q = jnp.concatenate([jnp.zeros(6), angles])
    joints, jac = projection.pose_jacobian(angles, rot, lengths)
    np.testing.assert_allclose(joints, fk(q), atol=1e-6)
    np.testing.assert_allclose(jac, jax.jacfwd(fk)(q), atol=2e-6)


def test_bad_input_and_file_round_trip(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        projection.project(np.zeros((2, 5, 21, 3)))
    bad = _fk_motion()
    bad[1, 2, 0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="clip 1"):
        projection.project(bad)
    motion = _fk_motion(seed=4)
    clips = {f"c{i}": {"motion": motion[i], "left_annotation": ["l"], "right_annotation": ["r"],
                       "interaction_annotation": ["i"]} for i in range(2)}
    clips["short"] = dict(clips["c0"], motion=np.concatenate([motion[0], motion[1]])[:5])
    src, out = tmp_path / "in.clips.npz", tmp_path / "out.clips.npz"
    store.save_clips(src, clips)
    summary = projection.project_file(str(src), str(out))
    assert summary["clips"] == 3 and summary["max_error_m"] < 1e-5
    back = store.load_any(out)
    assert back["short"]["motion"].shape == (5, 2, 21, 3)
    assert back["c1"]["left_annotation"] == ["l"]
    np.testing.assert_allclose(back["c1"]["motion"], motion[1], atol=5e-5)
