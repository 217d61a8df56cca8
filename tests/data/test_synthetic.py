import filecmp
import json
import os

import numpy as np
import pytest

from handx_jax.data import handx_format, store, synthetic, validate
from handx_jax.data.synthetic import checks, generator, program
from handx_jax.hand import skeleton

NUM_TRAIN, NUM_TEST = 64, 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth1")
    paths = synthetic.write_dataset(out, NUM_TRAIN, NUM_TEST, seed=3, workers=1, chunk=16)
    clips = store.load_clips(paths["train_clips"])
    gt_file = np.load(paths["train_ground_truth_npz"])
    gt = {k: gt_file[k] for k in gt_file.files}
    records = [json.loads(line) for line in open(paths["train_ground_truth_jsonl"])]
    motion = np.stack([clips[n]["motion"] for n in gt["names"]])
    return {"dir": out, "paths": paths, "clips": clips, "gt": gt, "records": records,
            "motion": motion}


def test_writes_both_formats_that_validate(dataset):
    paths = dataset["paths"]
    for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        handx = handx_format.load_handx(paths[f"{split}_handx"])
        ours = store.load_clips(paths[f"{split}_clips"])
        assert len(handx) == len(ours) == count
        for name, clip in ours.items():
            assert clip["motion"].shape == (60, 2, 21, 3)
            assert clip["motion"].dtype == np.float32
            assert np.array_equal(clip["motion"], handx[name]["motion"])
            for key in ("left_annotation", "right_annotation", "interaction_annotation"):
                assert len(clip[key]) == 5 and all(clip[key]) and clip[key] == handx[name][key]
        for key in ("handx", "clips"):
            assert validate.validate_file(paths[f"{split}_{key}"]).problems == []


def test_byte_identical_whatever_the_worker_count(dataset, tmp_path):
    other = synthetic.write_dataset(tmp_path, NUM_TRAIN, NUM_TEST, seed=3, workers=2, chunk=16)
    for key, path in dataset["paths"].items():
        assert filecmp.cmp(path, other[key], shallow=False), key
    # A different seed gives different clips.
    diff = generator.generate_chunk(4, "train", range(4))["motion"]
    assert not np.array_equal(diff, dataset["motion"][:4])


def test_canonical_frame_metres_and_constant_bones(dataset):
    motion = dataset["motion"]
    left, right = motion[:, 0, 0, 0], motion[:, 0, 1, 0]
    assert np.all(right[:, 0] > left[:, 0])
    assert np.allclose(left[:, 1], right[:, 1], atol=1e-6)
    assert np.allclose(0.5 * (left[:, :2] + right[:, :2]), 0.0, atol=1e-6)
    span = np.linalg.norm(motion[:, :, :, skeleton.MCP["middle"]] - motion[:, :, :, 0], axis=-1)
    assert 0.075 < span.min() and span.max() < 0.105  # wrist to middle MCP ~9 cm +- 8 %
    dev, bound = checks.bone_length_deviation(motion)
    assert dev <= bound  # float32 rounding is the only change in bone length
    assert checks.limit_violations(dataset["gt"]["joint_angles"]) == 0


def test_intended_contacts_are_reached_and_hands_do_not_interpenetrate(dataset):
    gt, motion = dataset["gt"], dataset["motion"]
    reach = checks.contact_reach(motion, gt)
    hits = sum(h for h, _ in reach.values())
    total = sum(n for _, n in reach.values())
    assert reach["intra"][1] > 0 and reach["tip_palm"][1] > 0 and reach["palm_palm"][1] > 0
    assert hits >= 0.98 * total
    for hit, n in reach.values():
        assert hit >= 0.98 * n
    pen = checks.penetration(motion, gt["scale"])
    free = ~checks.contact_frames(gt)
    assert (pen[free] <= checks.PENETRATION_M).mean() >= 0.99
    # Outside intended contacts, a fingertip is not on the thumb by accident: contacts are
    # where the program puts them.
    dist = checks.contact_distances(motion)
    assert (dist["intra"][gt["intra_contact"]] < 0.02).all()


def _projected_finger_flexion(motion):
    """HandX flexion of the four fingers (no dead zone), independent of the generator."""
    x = motion[..., 4, :] - motion[..., 0, :]
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    z = np.cross(x, motion[..., 1, :] - motion[..., 0, :])
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    out = []
    for finger in ("index", "middle", "ring", "pinky"):
        bones = np.diff(motion[..., list(skeleton.CHAINS[finger]), :], axis=-2)
        ang = np.arctan2(np.einsum("...bc,...c->...b", bones, z),
                         np.einsum("...bc,...c->...b", bones, x))
        diff = -(ang[..., 1:] - ang[..., :-1])
        out.append((diff + np.pi) % (2 * np.pi) - np.pi)  # a fist bends past 180 in total
    flex = np.stack(out, axis=-2)
    flex[..., 0, :, :] *= -1.0  # the left hand is mirrored: HandX negates its sign
    return flex


def test_ground_truth_flexion_matches_the_motion(dataset):
    gt, motion = dataset["gt"], dataset["motion"].astype(np.float64)
    measured = _projected_finger_flexion(motion)
    assert gt["flexion"].shape == (NUM_TRAIN, 60, 2, 5, 3)
    assert np.abs(measured - gt["flexion"][..., 1:, :]).max() < 1e-3
    assert gt["abduction"].shape == (NUM_TRAIN, 60, 2, 5)
    assert gt["spacing"].shape == (NUM_TRAIN, 60, 2, 3)
    assert np.allclose(gt["wrist"], motion[..., 0, :], atol=1e-6)
    # Ground-truth flexion spans the states the descriptors need.
    deg = np.rad2deg(gt["flexion"][..., 1:, :])
    assert deg.max() > 60 and deg.min() < -20


def test_ground_truth_records_match_the_arrays(dataset):
    gt, records = dataset["gt"], dataset["records"]
    assert [r["clip"] for r in records] == list(gt["names"])
    families = set(checks.FAMILIES) | {"pose", "wrist_rotation", "mirror"}
    for i, rec in enumerate(records):
        assert set(rec["events"]) == {"left", "right", "two_hands"}
        for evs in rec["events"].values():
            for ev in evs:
                assert ev["family"] in families
                assert 0 <= ev["start"] <= ev["end"] <= 59
                assert ("constant_des" in ev) or ("start_des" in ev and "end_des" in ev) \
                    or ev["family"] in ("wrist_rotation", "wrist_trajectory")
        for h, side in enumerate(("left", "right")):
            contact_frames = set()
            for ev in rec["events"][side]:
                if ev["family"] == "finger_tip_contact":
                    contact_frames |= set(range(ev["start"], ev["end"] + 1))
            assert contact_frames == set(np.flatnonzero(gt["intra_contact"][i, :, h].any(-1)))
        rel = rec["program"]["relation"]["type"]
        assert gt["palm_contact"][i].any() == (rel == "palms_together")
        assert gt["inter_contact"][i].any() == (rel == "tip_to_palm")
        assert gt["inter_tip_contact"][i].any() == (rel in ("tip_tap", "palms_together"))


def test_captions_vary_and_grow_with_detail(dataset):
    clips = dataset["clips"]
    concise = np.mean([len(c["right_annotation"][0]) for c in clips.values()])
    detailed = np.mean([len(c["right_annotation"][4]) for c in clips.values()])
    assert detailed > 1.5 * concise
    relations = {c["interaction_annotation"][2] for c in clips.values()}
    assert len(relations) > NUM_TRAIN // 3
    # Captions follow the program: a tapping clip says which tips meet.
    for rec in dataset["records"]:
        rel = rec["program"]["relation"]
        if rel["type"] == "tip_tap":
            text = " ".join(clips[rec["clip"]]["interaction_annotation"])
            assert skeleton.FINGERS[rel["finger"]] in text


def test_lower_quality_degrades_motion_but_keeps_the_skeleton():
    high = generator.generate_chunk(1, "train", range(16), quality="high")
    low = generator.generate_chunk(1, "train", range(16), quality="low")
    assert low["ground_truth"]["dropped"].any() and not high["ground_truth"]["dropped"].any()
    assert not np.allclose(low["motion"], high["motion"], atol=1e-3)
    assert np.array_equal(low["ground_truth"]["flexion"], high["ground_truth"]["flexion"])
    dev, bound = checks.bone_length_deviation(low["motion"])
    assert dev <= bound
    assert checks.limit_violations(low["ground_truth"]["joint_angles"]) == 0
    with pytest.raises(ValueError, match="quality"):
        generator.generate_chunk(1, "train", range(2), quality="ultra")


def test_programs_are_varied():
    progs = [program.sample_program(generator.clip_rng(0, "train", i), 60) for i in range(400)]
    assert len({checks.program_key(p) for p in progs}) == 400
    assert len({checks.skeleton_key(p) for p in progs}) > 300
    kinds = {p["relation"]["type"] for p in progs}
    assert kinds == set(program.RELATIONS)
    actions = {a["action"] for p in progs for s in ("left", "right") for a in p[s]["fingers"]}
    assert actions == set(program.FINGER_ACTIONS)


def test_cli_writes_a_dataset(tmp_path):
    from handx_jax import cli
    out = tmp_path / "cli"
    rc = cli.main(["data", "synth", "--out", str(out), "--num-clips", "6", "--test-clips", "2",
                   "--quiet", "--seed", "5"])
    assert rc == 0
    for name in ("train_can_pos_all_wotextfeat.npz", "test.clips.npz",
                 "train_ground_truth.jsonl", "test_ground_truth.npz"):
        assert os.path.exists(out / name)
    assert len(store.load_clips(out / "test.clips.npz")) == 2
    assert cli.main(["data", "synth", "--out", str(out), "--num-clips", "2",
                     "--workers", "0"]) == 2
