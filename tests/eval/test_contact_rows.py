"""Per-frame contact precision/recall, contact timing error and the projected row, against
direct loop oracles written here from the definitions."""

import numpy as np
import pytest

from handx_jax.eval import driver, metrics, report
from handx_jax.hand import descriptors, geometry

TIPS = (16, 17, 18, 19, 20)  # thumb, index, middle, ring, pinky tips
PALM_TRI = ((0, 13, 1), (0, 1, 4), (0, 4, 10), (0, 10, 7))


def _random_motion(seed, n=5, t=9):
    """Joints scattered over a few centimetres, so contact states change often."""
    return np.random.default_rng(seed).normal(scale=0.025, size=(n, t, 2, 21, 3))


def _oracle_frames(motion, kind):
    n, t = motion.shape[:2]
    out = []
    for i in range(n):
        clip = []
        for f in range(t):
            states = []
            for h in range(2):
                hand = motion[i, f, h]
                if kind == "intra":
                    states += [np.linalg.norm(hand[16] - hand[k]) < descriptors.INTRA_CONTACT_M for k in TIPS[1:]]
                else:
                    other = motion[i, f, 1 - h]
                    points = [w @ other[list(tri)] for tri in PALM_TRI for w in geometry.PALM_BARYCENTRIC]
                    for k in TIPS:
                        d = min(np.linalg.norm(hand[k] - p) for p in points)
                        states.append(d < descriptors.INTER_CONTACT_M)
            clip.append(states)
        out.append(clip)
    return np.asarray(out, bool)


def _oracle_prf(pred, true):
    tp = fp = fn = 0
    for p, g in zip(pred.reshape(-1), true.reshape(-1)):
        tp += p and g
        fp += p and not g
        fn += g and not p
    return tp / (tp + fp), tp / (tp + fn)


def _oracle_timing(pred, true):
    errors = []
    n, t, pairs = pred.shape
    for i in range(n):
        for k in range(pairs):
            pf = [f for f in range(t) if pred[i, f, k]]
            tf = [f for f in range(t) if true[i, f, k]]
            if pf and tf:
                errors.append((abs(pf[0] - tf[0]) + abs(pf[-1] - tf[-1])) / 2)
    return float(np.mean(errors)), len(errors)


@pytest.mark.parametrize("kind", ["intra", "inter"])
def test_frame_contacts_precision_recall_and_timing_match_loops(kind):
    pred, true = _random_motion(0), _random_motion(1)
    frames_p, frames_t = _oracle_frames(pred, kind), _oracle_frames(true, kind)
    assert 0 < frames_p.mean() < 1 and 0 < frames_t.mean() < 1  # both states occur
    np.testing.assert_array_equal(metrics.contact_frames(pred, kind), frames_p)
    # the per-clip HandX label is "any frame" of the per-frame states
    np.testing.assert_array_equal(metrics.contact_labels(pred, kind), frames_p.any(axis=1))
    prf = metrics.frame_contact_prf(pred, true, kind)
    precision, recall = _oracle_prf(frames_p, frames_t)
    assert prf["precision"] == pytest.approx(precision) and prf["recall"] == pytest.approx(recall)
    timing = metrics.contact_timing_error(pred, true, kind)
    error, pairs = _oracle_timing(frames_p, frames_t)
    assert timing["pairs"] == pairs > 0 and timing["error"] == pytest.approx(error)


def test_timing_error_known_shift_and_undefined():
    motion = np.zeros((1, 10, 2, 21, 3))
    motion[..., 0, :, 0] = -0.3  # hands far apart
    motion[:, :, :, 16, 1] = 0.1  # thumb tips 10 cm from every other tip
    motion[:, :, :, [17, 18, 19, 20], 2] = [0.0, 0.05, 0.1, 0.15]  # the other tips apart
    late, apart = motion.copy(), motion.copy()
    motion[0, 2:5, 0, 16] = motion[0, 2:5, 0, 17]  # left thumb touches index over frames 2..4
    late[0, 5:9, 0, 16] = late[0, 5:9, 0, 17]  # ... over frames 5..8
    timing = metrics.contact_timing_error(late, motion, "intra")
    assert timing == {"error": 0.5 * (3 + 4), "pairs": 1}
    prf = metrics.frame_contact_prf(late, motion, "intra")
    assert prf["tp"] == 0 and prf["fp"] == 4 and prf["fn"] == 3
    assert np.isnan(metrics.contact_timing_error(late, apart, "intra")["error"])


def test_driver_rows_and_projected_row():
    from tests.eval.test_driver import LookupEvaluator, _clips

    motion, captions = _clips(n=16, t=8)
    ev = LookupEvaluator(len(motion))

    def copy_generate(texts, num_per_text, seed):  # the clip each caption names
        return np.repeat(motion[[int(t[0].split()[-1]) for t in texts]], num_per_text, axis=0)

    result = driver.evaluate(ev, motion, captions, {"model": copy_generate}, replications=2, mm_texts=0,
                             mm_generations=0, progress=False, project=True)
    gt, proj = result["rows"]["ground truth"], result["rows"]["model, projected"]
    assert gt["Cf_P_intra"]["mean"] == 1.0 and gt["Cf_R_intra"]["mean"] == 1.0
    assert gt["C_timing_intra"]["mean"] == 0.0
    assert proj["BoneDev_mm"]["mean"] < 1e-3 and proj["JointLimit"]["mean"] == 0.0
    assert result["rows"]["model"]["BoneDev_mm"]["mean"] > 1.0  # the raw noise clips are not hands
    assert proj["ProjMPJPE_mm"]["mean"] > 0
    table = report.markdown_table(result)
    assert "model, projected" in table and "intra frame P" in table and "timing err." in table


def test_refined_row_closes_the_contacts_the_captions_state():
    """Even clips' captions state a left thumb-index pinch that their ground truth has and the
    samples lack: the '<model>, projected + stated contacts' row recovers it (recall rises over
    the projected row) with the projection's constant bones and joint limits."""
    from handx_jax.data import synthetic
    from handx_jax.hand import skeleton
    from tests.eval.test_driver import LookupEvaluator

    clips = synthetic.generate(40, "test", seed=3)
    sample = np.concatenate([c["motion"] for c in clips])[:, :30].astype(np.float32)
    sample[:, 0, 0, 0, 0] += np.arange(len(sample)) / 1000.0 - sample[:, 0, 0, 0, 0]  # lookup identity
    gt = sample.copy()
    thumb, index = skeleton.FINGERTIPS[0], skeleton.FINGERTIPS[1]
    gt[::2, :, 0, thumb] = gt[::2, :, 0, index] + 0.005  # the stated pinch, in the ground truth only
    pinch = "The left thumb presses against the index fingertip."
    captions = [[(f"{pinch} clip {i}" if i % 2 == 0 else f"Left hand rests, clip {i}", "right", "relation")]
                for i in range(len(sample))]

    def generate(texts, num_per_text, seed):  # the named clip as sampled, without the pinch
        return np.repeat(sample[[int(t[0].split()[-1]) for t in texts]], num_per_text, axis=0)

    result = driver.evaluate(LookupEvaluator(len(sample)), gt, captions, {"m": generate}, replications=1,
                             mm_texts=0, mm_generations=0, progress=False, project=True, refine_contacts=True)
    rows = result["rows"]
    refined, proj = rows["m, projected + stated contacts"], rows["m, projected"]
    assert refined["C_R_intra"]["mean"] > proj["C_R_intra"]["mean"] + 0.2
    assert refined["BoneDev_mm"]["mean"] < 1e-3 and refined["JointLimit"]["mean"] == 0.0
    assert "refine" in result["timing_s"]
