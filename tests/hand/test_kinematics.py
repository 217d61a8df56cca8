import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.hand import ik, kinematics, skeleton


def _random_params(rng, shape, dtype=np.float64):
    lo, hi = kinematics.FLEXION_LIMITS
    alo, ahi = kinematics.ABDUCTION_LIMITS
    return kinematics.HandParams(
        flexion=rng.uniform(lo, hi, size=shape + (5, 3)).astype(dtype),
        abduction=rng.uniform(alo, ahi, size=shape + (5,)).astype(dtype),
        wrist_rot=rng.normal(size=shape + (3,)).astype(dtype),
        wrist_pos=rng.normal(scale=0.2, size=shape + (3,)).astype(dtype),
        scale=rng.uniform(0.92, 1.08, size=shape[:1] + (1,) * (len(shape) - 1)).astype(dtype)
        * np.ones(shape, dtype),
        left=np.zeros(shape, bool),
    )


def _bone_rel_error(joints):
    lengths = np.asarray(kinematics.bone_lengths(joints), np.float64)  # (B, T, 20)
    return np.abs(lengths - lengths[:, :1]).max() / lengths.min(), lengths


def test_bone_lengths_constant_over_time_float64():
    rng = np.random.default_rng(0)
    params = _random_params(rng, (4, 50))
    with jax.enable_x64(True):
        joints = jax.jit(kinematics.forward_kinematics)(
            kinematics.HandParams(*[jnp.asarray(p) for p in params]))
        assert joints.dtype == jnp.float64
    err, lengths = _bone_rel_error(np.asarray(joints))
    assert err <= 1e-6
    # Lengths are the rest table times the subject scale.
    expected = kinematics.rest_bone_lengths() * params.scale[:, :1, None]
    assert np.allclose(lengths, expected, rtol=1e-9)


def test_bone_lengths_constant_float32_within_rounding():
    rng = np.random.default_rng(1)
    params = _random_params(rng, (4, 50), np.float32)
    joints = np.asarray(jax.jit(kinematics.forward_kinematics)(
        kinematics.HandParams(*[jnp.asarray(p) for p in params])))
    assert joints.dtype == np.float32
    lengths = np.asarray(kinematics.bone_lengths(joints.astype(np.float64)))
    dev = np.abs(lengths - lengths[:, :1])
    # float32 arithmetic on coordinates up to |c| allows errors of a few ulp(|c|) per
    # coordinate; 16 ulp over a chain of 4 rotated bones plus the wrist offset.
    ulp = np.spacing(np.float32(np.abs(joints).max()))
    assert dev.max() <= 16 * ulp
    assert dev.max() / lengths.min() < 1e-5


def test_numpy_and_jax_paths_agree_and_vmap():
    rng = np.random.default_rng(2)
    params = _random_params(rng, (3, 7))
    ref = kinematics.forward_kinematics(params)  # numpy float64
    assert isinstance(ref, np.ndarray) and ref.shape == (3, 7, 21, 3)
    fk = jax.jit(kinematics.forward_kinematics)
    jparams = kinematics.HandParams(*[jnp.asarray(p, jnp.float32) for p in params])
    out = fk(jparams)
    assert np.allclose(np.asarray(out), ref, atol=2e-6)
    vm = jax.vmap(fk)(jparams)
    assert np.allclose(np.asarray(vm), np.asarray(out), atol=1e-7)


def test_left_hand_is_the_mirror_of_the_right():
    rng = np.random.default_rng(3)
    params = _random_params(rng, (5,))
    right = kinematics.forward_kinematics(params)
    left = kinematics.forward_kinematics(params._replace(left=np.ones(5, bool)))
    assert np.allclose(left, right * np.array([-1.0, 1.0, 1.0]))

    def handedness(j):
        a = j[:, skeleton.MCP["index"]] - j[:, 0]
        b = j[:, skeleton.MCP["pinky"]] - j[:, 0]
        c = j[:, skeleton.JOINT_INDEX["thumb_tip"]] - j[:, 0]  # off the palm plane
        return np.sign(np.einsum("ni,ni->n", np.cross(a, b), c))

    rest = kinematics.HandParams(np.zeros((2, 5, 3)), np.zeros((2, 5)), np.zeros((2, 3)),
                                 np.zeros((2, 3)), np.ones(2), np.array([False, True]))
    j = kinematics.forward_kinematics(rest)
    h = handedness(j)
    assert h[0] == -h[1] != 0


def test_rest_pose_follows_the_joint_order_and_looks_like_a_hand():
    j = kinematics.local_joints(np.zeros((5, 3)), np.zeros(5))
    assert j.shape == (21, 3)
    assert np.allclose(j[0], 0.0)
    # Wrist to middle MCP about 9 cm along +x; index on the thumb side (+y), pinky opposite.
    assert abs(np.linalg.norm(j[skeleton.MCP["middle"]]) - 0.09) < 0.005
    assert j[skeleton.MCP["index"], 1] > 0 > j[skeleton.MCP["pinky"], 1]
    assert j[skeleton.JOINT_INDEX["thumb_tip"], 1] > j[skeleton.MCP["index"], 1]
    for finger, chain in skeleton.CHAINS.items():
        # Each chain runs outwards from the wrist, joint after joint.
        dist = np.linalg.norm(j[list(chain)], axis=-1)
        assert np.all(np.diff(dist) > 0), finger
        if finger != "thumb":
            length = np.linalg.norm(np.diff(j[list(chain[1:])], axis=0), axis=-1).sum()
            assert 0.065 <= length <= 0.095, (finger, length)


def _projected_flexion(joints):
    """HandX measure for the four fingers (right hand), written independently here."""
    x = joints[..., 4, :] - joints[..., 0, :]
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    z = np.cross(x, joints[..., 1, :] - joints[..., 0, :])
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    y = np.cross(z, x)
    out = []
    for finger in ("index", "middle", "ring", "pinky"):
        chain = list(skeleton.CHAINS[finger])
        pts = joints[..., chain, :]
        bones = np.diff(pts, axis=-2)
        bx = np.einsum("...bc,...c->...b", bones, x)
        bz = np.einsum("...bc,...c->...b", bones, z)
        ang = np.arctan2(bz, bx)  # angle in the x-z plane
        diff = -(ang[..., 1:] - ang[..., :-1])
        out.append((diff + np.pi) % (2 * np.pi) - np.pi)  # wrap into [-pi, pi)
    return np.stack(out, axis=-2)


def test_finger_angles_equal_the_projected_flexion_measure():
    rng = np.random.default_rng(4)
    params = _random_params(rng, (64,))
    joints = kinematics.forward_kinematics(params)
    measured = _projected_flexion(joints)
    assert np.allclose(measured, params.flexion[:, 1:], atol=1e-9)


def test_joint_limits_clip():
    flex = np.full((5, 3), 10.0)
    abd = np.full(5, -10.0)
    f, a = kinematics.clip_to_limits(flex, abd)
    assert np.all(f <= kinematics.FLEXION_LIMITS[1]) and np.all(a >= kinematics.ABDUCTION_LIMITS[0])
    assert np.deg2rad(-30.0) == kinematics.FLEXION_LIMITS[0, 1, 0]


def test_pinch_ik_brings_tips_together_within_limits():
    rng = np.random.default_rng(5)
    pref = np.deg2rad(np.column_stack([rng.uniform(10, 50, 8), rng.uniform(-20, 10, 8),
                                       rng.uniform(10, 40, 8), rng.uniform(5, 40, 8),
                                       rng.uniform(25, 60, 8), rng.uniform(25, 65, 8)]))
    finger = np.tile(np.arange(1, 5), 2)
    q, gap = ik.solve_pinch(jnp.asarray(pref, jnp.float32), jnp.asarray(finger))
    q, gap = np.asarray(q), np.asarray(gap)
    assert np.all(gap < 0.005)
    assert np.all(q >= ik.LOWER - 1e-6) and np.all(q <= ik.UPPER + 1e-6)
    # The reported gap is the real distance between the two tips of the solved pose.
    for b in range(8):
        flex, abd = ik.pose_from_unknowns(jnp.asarray(q[b]), finger[b], jnp.zeros((5, 3)),
                                          jnp.zeros(5))
        j = np.asarray(kinematics.local_joints(np.asarray(flex, np.float64),
                                               np.asarray(abd, np.float64)))
        assert abs(np.linalg.norm(j[16] - j[16 + finger[b]]) - gap[b]) < 1e-5
