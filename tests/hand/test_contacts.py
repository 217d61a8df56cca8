import numpy as np
import pytest

from handx_jax.eval import metrics
from handx_jax.hand import contacts, descriptors, geometry, kinematics, projection

T = 8


def _poses():
    """Right-hand poses in the limits (scale 1, hand frame): one whose thumb tip is 2.6-3.0 cm
    from the index tip with the other tips beyond 5 cm, one with every tip beyond 6 cm."""
    rng = np.random.default_rng(0)
    lo, hi = kinematics.FLEXION_LIMITS
    alo, ahi = kinematics.ABDUCTION_LIMITS
    flex, abd = rng.uniform(lo, hi, (6000, 5, 3)), rng.uniform(alo, ahi, (6000, 5))
    d = geometry.intra_tip_distances(kinematics.local_joints(flex, abd))
    near = np.flatnonzero((d[:, 0] > 0.026) & (d[:, 0] < 0.030) & (d[:, 1:].min(axis=1) > 0.05))[0]
    far = np.flatnonzero(d.min(axis=1) > 0.06)[0]
    return (flex[near], abd[near]), (flex[far], abd[far])


def _hand(pose, rot, pos, left):
    """(T, 21, 3) world joints of `pose` with a small wrist drift over the frames."""
    drift = 0.003 * np.sin(np.linspace(0, 3, T))[:, None] * np.array([1.0, 0.5, -0.3])
    params = kinematics.HandParams(np.broadcast_to(pose[0], (T, 5, 3)), np.broadcast_to(pose[1], (T, 5)),
                                   np.broadcast_to(rot, (T, 3)), pos + drift, 1.0, np.full(T, left))
    return np.asarray(kinematics.forward_kinematics(params))


def _motion():
    """Clip 0: a right hand in a near-pinch, the left hand open and far away. Clip 1: two open
    hands, the right hand's index tip about 3 cm from the left palm, the other tips further."""
    near, far = _poses()
    zero = np.zeros(3)
    clip0 = np.stack([_hand(far, zero, np.array([-0.2, 0.0, 0.0]), True),
                      _hand(near, zero, np.array([0.2, 0.0, 0.0]), False)], axis=1)
    left = _hand(far, zero, np.array([-0.05, 0.0, 0.0]), True)
    # Right hand turned palm-down above the left palm, index tip 3 cm above the palm centre.
    rot = np.array([np.pi, 0.0, 0.0])
    local = np.asarray(kinematics.forward_kinematics(kinematics.HandParams(far[0], far[1], rot, zero)))
    normal = np.cross(left[0, 4] - left[0, 0], left[0, 1] - left[0, 0])
    normal /= np.linalg.norm(normal)
    centre = geometry.palm_centres(left[0])
    side = np.sign(normal @ (local[17] - local[0])) or 1.0  # approach from the side the finger points away from
    wrist = centre - side * 0.03 * normal - local[17]
    right = _hand(far, rot, wrist, False)
    clip1 = np.stack([left, right], axis=1)
    # Clip 2: two open hands far apart; the prompt will name the right thumb-middle pair.
    clip2 = np.stack([_hand(far, zero, np.array([-0.2, 0.0, 0.0]), True),
                      _hand(far, zero, np.array([0.2, 0.0, 0.0]), False)], axis=1)
    return np.stack([clip0, clip1, clip2]).astype(np.float32)


def test_prompt_contacts_reads_the_stated_pairs():
    prompts = [("Initially, the thumb tip makes contact with the index tip. The thumb repeatedly taps the "
                "middle tip, twice. The thumb stays fully extended.", "The ring finger bends; the thumb is open.",
                "Midway, the left index and pinky fingertips touch the right palm. The palms touch."),
               ("", "The thumb and the little tip meet twice.",
                "The right thumb fingertip presses against the left palm. Early on, the left ring fingertip "
                "comes close to the right palm.")]
    intra, inter = contacts.prompt_contacts(prompts)
    np.testing.assert_array_equal(intra, [[[1, 1, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 1]]])
    np.testing.assert_array_equal(inter, [[[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]])


def test_captured_and_targets_match_their_definition():
    rng = np.random.default_rng(1)
    dist = rng.uniform(0.0, 0.06, (5, 12, 3))
    got = contacts.captured(dist, 0.03, 3)
    for c in range(5):
        for p in range(3):
            near = dist[c, :, p] < 0.03
            runs = any(near[i:i + 3].all() for i in range(12 - 2))
            assert got[c, p] == runs
    d = np.linspace(0.0, 0.07, 141)[None, :, None]
    target = contacts.target_distances(d, np.ones((1, 1), bool), 0.03, 0.012, 0.015)[0, :, 0]
    assert np.all(target[d[0, :, 0] <= 0.03] == np.float32(0.012))
    ramp = (d[0, :, 0] > 0.03) & (d[0, :, 0] < 0.045)
    assert np.all(np.diff(target[ramp]) > 0) and np.all(target[ramp] < d[0, ramp, 0])  # continuous pull, fading
    assert np.all(target[d[0, :, 0] >= 0.045] == contacts.FAR)
    assert np.all(contacts.target_distances(d, np.zeros((1, 1), bool), 0.03, 0.012, 0.015) == contacts.FAR)


def test_near_contacts_close_far_pairs_untouched_hands_stay_valid():
    motion = _motion()
    base = projection.project(motion)
    before_intra = geometry.intra_tip_distances(base.motion)  # (2, T, 2, 4)
    before_inter = geometry.tip_to_other_palm(base.motion, nearest=1)  # (2, T, 2, 5)
    assert 0.025 < before_intra[0, :, 1, 0].min() and before_intra[0, :, 1, 0].max() < 0.035
    assert 0.02 < before_inter[1, :, 1, 1].min() < 0.035  # the approaching index tip
    assert not metrics.contact_labels(base.motion, "intra")[[0, 2]].any()
    assert before_intra[2, :, 1, 1].min() > 0.06  # the pair the prompt names is far apart

    settings = contacts.ContactSettings(intra_radius=0.035, inter_radius=0.035, min_frames=4, apart_unnamed=False)
    named = np.zeros((3, 2, 4), bool)
    named[2, 1, 1] = True
    res = contacts.refine_contacts(motion, settings, base=base, intra_named=named)
    # The near pairs are captured and end in contact on every frame.
    assert res.intra_captured[0, 1, 0] and res.intra_captured[2, 1, 1] and res.intra_captured.sum() == 2
    assert res.inter_captured[1, 1, 1]
    after_intra = geometry.intra_tip_distances(res.motion)
    after_inter = geometry.tip_to_other_palm(res.motion, nearest=1)
    assert after_intra[0, :, 1, 0].max() < descriptors.INTRA_CONTACT_M
    assert after_inter[1, :, 1, 1].max() < descriptors.INTER_CONTACT_M
    assert after_intra[2, :, 1, 1].max() < descriptors.INTRA_CONTACT_M  # named: closed from 6 cm away
    np.testing.assert_array_equal(res.motion[2, :, 0], base.motion[2, :, 0])
    # Hands with no captured pair are the projection, bit for bit; the pulled hand keeps its wrist.
    assert not res.inter_captured[0].any() and not res.intra_captured[0, 0].any()
    np.testing.assert_array_equal(res.motion[0, :, 0], base.motion[0, :, 0])
    assert np.linalg.norm(res.motion[0, :, 1, 0] - base.motion[0, :, 1, 0], axis=-1).max() < 0.005
    # Bones keep the projection's lengths on every frame; angles stay in the limits: the
    # refined motion is a fixed point of the projection.
    lengths = geometry.bone_lengths(res.motion.astype(np.float64))
    np.testing.assert_allclose(lengths, np.broadcast_to(base.lengths[:, None], lengths.shape), atol=2e-6)
    assert metrics.joint_limit_violation_rate(res.motion) == 0.0
    assert projection.project(res.motion).error.max() < 2e-5
    assert np.all(res.moved[:1] > 0)
    with pytest.raises(ValueError, match="intra_named must have shape"):
        contacts.refine_contacts(motion, settings, base=base, intra_named=named[:2])


def test_sample_refine_contacts_closes_the_prompted_pair(tmp_path, monkeypatch):
    """`handx sample --refine-contacts` closes the pair the prompt states (sampler stubbed with
    clips of the shape compiled above)."""
    import json
    import types

    from handx_jax import cli, families
    from handx_jax.data import store

    motion = _motion()
    fake = types.SimpleNamespace(name="fake", check_options=lambda options: {},
                                 load_sampler=lambda workdir, step=None: lambda prompts, **kw: motion)
    monkeypatch.setattr(families, "run_family", lambda workdir: fake)
    texts = [("", "", ""), ("", "", ""), ("", "Midway, the thumb touches the middle tip.", "")]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"left": l, "right": r, "relation": x or "apart"}) + "\n"
                               for l, r, x in texts))
    out = str(tmp_path / "refined.npz")
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompts", str(prompts), "--refine-contacts",
                     "--out", out]) == 0
    clips = store.load_any(out)
    refined = np.stack([clips[f"sample_{i:04d}_000"]["motion"] for i in range(3)])
    dist = geometry.intra_tip_distances(refined)[2, :, 1]  # (T, 4) right thumb to index..pinky
    assert dist[:, 1].min() < descriptors.INTRA_CONTACT_M  # the stated contact happens ...
    assert dist[:, [0, 2, 3]].min() >= descriptors.INTRA_CONTACT_M  # ... and no other (unnamed pairs kept apart)
    np.testing.assert_allclose(refined[:2], projection.project(motion).motion[:2], atol=1e-6)  # nothing named there
