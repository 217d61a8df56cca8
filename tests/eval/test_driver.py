"""The replicated evaluation driver and its outputs, with a transparent stand-in evaluator."""

import json
import math
import os

import numpy as np
import pytest

from handx_jax.eval import driver, metrics, report


class LookupEvaluator:
    """Embeds a clip by its identity (a marker coordinate) and a text by the clip it names,
    so matched pairs coincide: every figure of the ground-truth row is known in advance."""

    source, step = "lookup", 7

    def __init__(self, n, dim=16, seed=0):
        self.table = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)

    def encode_text(self, triples):
        return self.table[[int(t[0].split()[-1]) for t in triples]]

    def encode_motion(self, motion):
        ids = np.rint(np.asarray(motion)[:, 0, 0, 0, 0] * 1000).astype(int)
        out = self.table[np.clip(ids, 0, len(self.table) - 1)].copy()
        unknown = (ids < 0) | (ids >= len(self.table))
        out[unknown] = 10.0  # far from every real embedding
        return out


def _clips(n=40, t=12, seed=0):
    rng = np.random.default_rng(seed)
    motion = 0.05 * rng.normal(size=(n, t, 2, 21, 3)).astype(np.float32)
    motion[:, 0, 0, 0, 0] = np.arange(n) / 1000.0  # identity marker read by LookupEvaluator
    # Clip i pinches its left thumb and index tips when i is even.
    motion[::2, 3, 0, 16] = motion[::2, 3, 0, 17]
    captions = [[(f"left clip {i}", "right", "relation"), (f"left again {i}", "r2", "rel2")] for i in range(n)]
    return motion, captions


def test_ground_truth_row_has_known_values():
    motion, captions = _clips()
    ev = LookupEvaluator(len(motion))
    result = driver.evaluate(ev, motion, captions, replications=3, seed=1, progress=False)
    gt = result["rows"]["ground truth"]
    assert [gt[k]["mean"] for k in ("R@1", "R@2", "R@3")] == [1.0, 1.0, 1.0]
    assert gt["FID"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert gt["MM-Dist"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert gt["C_F1_intra"]["mean"] == 1.0 and gt["MPJPE_mm"]["mean"] == 0.0
    assert len(gt["R@1"]["values"]) == 3
    assert result["meta"]["replications"] == 3 and result["meta"]["num_samples"] == 40


def test_model_rows_copy_and_noise():
    motion, captions = _clips()
    ev = LookupEvaluator(len(motion))
    calls = []

    def copy_generate(texts, num_per_text, seed):
        calls.append((len(texts), num_per_text, seed))
        ids = [int(t[0].split()[-1]) for t in texts]
        return np.repeat(motion[ids], num_per_text, axis=0)

    result = driver.evaluate(ev, motion, captions, copy_generate, model_name="copy", replications=2,
                             mm_texts=5, mm_generations=10, progress=False)
    row = result["rows"]["copy"]
    assert row["R@1"]["mean"] == 1.0 and row["FID"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert row["MultiModality"]["mean"] == 0.0  # identical generations per text
    assert row["C_F1_intra"]["mean"] == 1.0
    # Both replications (40 clips + 5 x 10 MultiModality prompts each) in one call ...
    assert calls == [(2 * (40 + 50), 1, 0)]
    assert set(result["timing_s"]) == {"embed", "metrics", "sample", "project", "refine"} and result["timing_s"]["sample"] >= 0
    # ... or one call per replication, each with its own seed; a deterministic generator's
    # figures do not depend on the grouping.
    calls.clear()
    single = driver.evaluate(ev, motion, captions, copy_generate, model_name="copy", replications=2,
                             mm_texts=5, mm_generations=10, progress=False, samples_per_call=90)
    assert calls == [(90, 1, 0), (90, 1, 1)]
    assert single["rows"] == result["rows"]

    def noise_generate(texts, num_per_text, seed):
        rng = np.random.default_rng(seed)
        out = 0.05 * rng.normal(size=(len(texts) * num_per_text, *motion.shape[1:]))
        out[:, 0, 0, 0, 0] = -1.0  # unknown identity
        return out

    noisy = driver.evaluate(ev, motion, captions, noise_generate, model_name="noise", replications=2,
                            mm_texts=5, mm_generations=10, progress=False)["rows"]["noise"]
    assert noisy["FID"]["mean"] > 10.0
    assert noisy["R@3"]["mean"] < 0.5


def test_replication_summary_interval():
    summary = report.summarize([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5
    assert summary["ci95"] == pytest.approx(1.96 * np.std([1, 2, 3, 4]) / 2.0)


def test_outputs_table_and_log(tmp_path):
    motion, captions = _clips()
    ev = LookupEvaluator(len(motion))
    result = driver.evaluate(ev, motion, captions, lambda t, k, s: np.repeat(motion[[int(x[0].split()[-1]) for x in t]], k, 0),
                             model_name="m step 5", replications=2, mm_texts=4, mm_generations=2, progress=False,
                             heldout=(motion[::-1].copy(), captions[::-1]))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 1.0}) + "\n")
    paths = driver.write_outputs(str(tmp_path), result, "m step 5", 5)
    table = open(paths["table"]).read().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| setting")]
    assert rows[0].startswith("| ground truth |") and rows[-1].startswith("| m step 5 |")
    assert "held-out ground truth" in rows[1]
    header = [line for line in table if line.startswith("| setting")][0]
    assert header.count("|") == len(report.COLUMNS) + 2
    saved = json.load(open(paths["metrics"]))
    assert saved["rows"]["ground truth"]["R@1"]["mean"] == 1.0
    assert "MultiModality" not in saved["rows"]["ground truth"]  # one motion per text: undefined
    assert " - |" in rows[0] and "MultiModality" in saved["rows"]["m step 5"]
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert lines[0] == {"step": 5, "loss": 1.0}
    assert lines[-1]["step"] == 5 and lines[-1]["eval/R@3"] == 1.0
    assert {"eval/FID", "eval/C_F1_intra", "eval/C_F1_inter", "eval/Jitter"} <= set(lines[-1])
    assert all(math.isfinite(v) for k, v in lines[-1].items() if k.startswith("eval/"))
    # An earlier checkpoint gets its own folder and leaves the newest's files alone.
    earlier = driver.write_outputs(str(tmp_path), result, "m step 5", 3, subdir="step_3")
    assert earlier["metrics"] == str(tmp_path / "eval" / "step_3" / "metrics.json")
    assert os.path.isfile(earlier["table"]) and json.load(open(paths["metrics"])) == saved
    assert json.loads(open(tmp_path / "metrics.jsonl").read().splitlines()[-1])["step"] == 3


def test_clip_arrays_names_bad_clips():
    good = {"motion": np.zeros((12, 2, 21, 3)), "left_annotation": ["a"], "right_annotation": ["b"],
            "interaction_annotation": ["c"]}
    with pytest.raises(ValueError, match="'short'"):
        driver.clip_arrays({"ok": good, "short": {**good, "motion": np.zeros((5, 2, 21, 3))}}, 12)
    with pytest.raises(ValueError, match="'uneven'"):
        driver.clip_arrays({"uneven": {**good, "right_annotation": []}}, 12)
    names, motion, caps = driver.clip_arrays({"b": good, "a": good}, 10)
    assert names == ["a", "b"] and motion.shape == (2, 10, 2, 21, 3) and caps[0] == [("a", "b", "c")]


def test_hand_shuffles_keep_each_hand_real():
    motion, _ = _clips(n=10)
    mism = driver.mismatch_hands(motion, seed=3)
    np.testing.assert_array_equal(mism[:, :, 0], motion[:, :, 0])
    sources = [int(np.flatnonzero((motion[:, :, 1] == mism[i, :, 1]).all(axis=(1, 2, 3)))[0]) for i in range(10)]
    assert sorted(sources) == list(range(10)) and all(s != i for i, s in enumerate(sources))
    perm = driver.permute_right_frames(motion, seed=3)
    np.testing.assert_array_equal(perm[:, :, 0], motion[:, :, 0])
    np.testing.assert_allclose(np.sort(perm[:, :, 1], axis=1), np.sort(motion[:, :, 1], axis=1))
    noise = driver.gaussian_noise_like(motion, seed=0)
    assert noise.shape == motion.shape and not np.allclose(noise, motion)


def test_contact_timing_checks_on_synthetic_clips():
    """The must-show of the contact metric on the generator's clips: F1 of the ground truth
    against itself is 1, and below 0.5 once the two hands' timelines are shuffled across clips."""
    from handx_jax.data import synthetic

    motion = np.concatenate([c["motion"] for c in synthetic.generate(128, "test", seed=0)])
    out = driver.contact_timing_checks(motion, seeds=5, seed=0)
    assert out["contact_clips"] == 128 and out["contact_seeds"] == 5
    assert out["contact_positives_inter"] >= 8 and out["contact_positives_intra"] >= 8
    assert out["C_F1_intra_self"] == 1.0 and out["C_F1_inter_self"] == 1.0
    assert out["C_F1_inter_hands_mismatched"] < 0.5
    assert out["C_F1_inter_hands_mismatched_max"] < 1.0
    assert 0.0 <= out["C_F1_inter_hands_mismatched_ci95"] < 0.25
    # Intra-hand labels are per hand and per clip: reordering one hand's frames cannot change them.
    assert out["C_F1_intra_right_frames_permuted"] == 1.0


def test_contact_timing_checks_known_answer():
    """Clip 0 touches the other palm, clip 1 does not: after the derangement clip 0's left
    tip meets clip 1's right hand (contact lost) and clip 1 gains nothing, so F1 is 0."""
    from handx_jax.hand import geometry

    motion = np.zeros((2, 4, 2, 21, 3))
    motion[:, :, 0] = np.linspace(0.0, 0.1, 21)[:, None] * np.array([1.0, 0.3, 0.2])
    motion[:, :, 1] = motion[:, :, 0] + np.array([0.5, 0.0, 0.0])  # right hand 50 cm away
    motion[1, :, 1] += np.array([0.5, 0.0, 0.0])  # clip 1's right hand further still
    palm = geometry.palm_points(motion[0, :, 1])  # (T, 100, 3)
    motion[0, :, 0, 17] = palm[:, 40]  # left index tip on the right palm in clip 0
    out = driver.contact_timing_checks(motion, seeds=3)
    assert out["contact_positives_inter"] == 1 and out["C_F1_inter_self"] == 1.0
    assert out["C_F1_inter_hands_mismatched"] == 0.0 and out["C_F1_inter_hands_mismatched_max"] == 0.0
    assert out["C_F1_inter_right_frames_permuted"] == 1.0  # the contact lasts every frame
    with pytest.raises(ValueError, match="at least 2 clips"):
        driver.contact_timing_checks(motion[:1])


def test_protocol_is_recorded_and_changes_batches_and_empty_contacts(tmp_path):
    motion, captions = _clips()  # 40 clips: one HandX batch of 40, one HumanML3D batch of 32
    ev = LookupEvaluator(len(motion))
    handx = driver.evaluate(ev, motion, captions, replications=1, progress=False)
    assert handx["meta"]["protocol"] == "handx" and handx["meta"]["r_precision_batch"] == 64
    h3d = driver.evaluate(ev, motion, captions, replications=1, progress=False, protocol="humanml3d")
    assert h3d["meta"]["protocol"] == "humanml3d" and h3d["meta"]["r_precision_batch"] == 32
    assert report.markdown_table(h3d).splitlines()[0].startswith("| setting (humanml3d protocol) |")
    still = motion.copy()
    still[:, :, :, :, 0] += np.arange(2)[None, None, :, None] * 5.0  # hands 5 m apart
    still[:, :, :, 16] += 1.0  # thumbs far from every tip: no contact anywhere
    rows = {p: driver.motion_metrics(still, still, metrics.get_protocol(p).empty_prf)
            for p in ("handx", "humanml3d")}
    assert rows["handx"]["C_F1_intra"] == 0.0 and rows["humanml3d"]["C_F1_intra"] == 1.0
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        driver.evaluate(ev, motion, captions, replications=1, progress=False, protocol="kit")


def test_text_dependence_row_separates_text_following_from_text_blind():
    motion, captions = _clips()
    ev = LookupEvaluator(len(motion))

    def follows(texts, num_per_text, seed):  # the clip its caption names
        return np.repeat(motion[[int(t[0].split()[-1]) for t in texts]], num_per_text, axis=0)

    def blind(texts, num_per_text, seed):  # random clips whatever the captions say
        pick = np.random.default_rng(seed).integers(len(motion), size=len(texts))
        return np.repeat(motion[pick], num_per_text, axis=0)

    result = driver.evaluate(ev, motion, captions, {"follows": follows, "blind": blind}, replications=3,
                             mm_generations=0, progress=False, shuffled_texts=True)
    assert set(result["rows"]) >= {"follows, captions shuffled", "blind, captions shuffled"}
    check = result["text_dependence"]
    assert check["follows"]["R@3"] == 1.0 and check["follows"]["follows_text"]
    # Shuffled captions name other clips: a text-following model then misses nearly always.
    assert check["follows"]["R@3_shuffled"] < 0.3
    assert not check["blind"]["follows_text"] and abs(check["blind"]["delta"]) < 0.25
    shuffled = driver.derangement(10, np.random.default_rng(0))
    assert sorted(shuffled) == list(range(10)) and all(a != b for a, b in zip(shuffled, range(10)))


def test_caption_table_draws_the_texts_and_embeddings_of_encoding_each_draw():
    """Embedding every caption once and looking draws up gives what encoding each drawn
    set of texts gives, with the same random draw."""
    motion, captions = _clips(n=12)
    ev = LookupEvaluator(len(motion))
    table = driver.CaptionTable(ev, captions)
    for rep in range(3):
        texts, emb = table.draw(np.random.default_rng([5, rep]))
        rng = np.random.default_rng([5, rep])  # oracle: one uniform pick per clip, in clip order
        assert texts == [options[int(rng.integers(len(options)))] for options in captions]
        np.testing.assert_array_equal(emb, ev.encode_text(texts))


def test_derangement_moves_every_index():
    for n in (2, 3, 17):
        other = driver.derangement(n, np.random.default_rng(n))
        assert sorted(other) == list(range(n)) and np.all(other != np.arange(n))
    with pytest.raises(ValueError, match="at least 2 clips"):
        driver.derangement(1, np.random.default_rng(0))


def test_reordered_scores_match_scoring_the_reordered_clips():
    """The shuffled row scores clips moved along a derangement from the facts of the original
    order; that must equal scoring the moved clips themselves."""
    gt, _ = _clips(n=24, t=10, seed=1)
    gen, _ = _clips(n=24, t=10, seed=2)
    gen[1::3, 4, 1, 16] = gen[1::3, 4, 1, 12]  # some right-hand pinches the ground truth lacks
    other = driver.derangement(len(gen), np.random.default_rng(3))
    fast = driver.score_facts(driver.motion_facts(gen), driver.motion_facts(gt), 0.0, order=other)
    slow = driver.motion_metrics(gen[other], gt, 0.0)
    slow.pop("MPJPE_mm")
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], nan_ok=True), key
    assert fast["C_F1_intra"] != driver.score_facts(driver.motion_facts(gen), driver.motion_facts(gt), 0.0)["C_F1_intra"]
