"""`handx annotate` / `handx features` end to end with the rules backend."""

import json

import numpy as np

from handx_jax import cli
from handx_jax.annotate import pipeline
from handx_jax.annotate import reasoner_rules as R
from handx_jax.data import handx_format, store
from tests.annotate import handmade as H


def _src(tmp_path, count=6):
    rng = np.random.default_rng(4)
    clips = {f"c{i}": {"motion": H.random_clip(rng), "left_annotation": ["old"] * 5,
                       "right_annotation": ["old"] * 5, "interaction_annotation": ["old"] * 5}
             for i in range(count)}
    path = str(tmp_path / "train_can_pos_all_wotextfeat.npz")
    handx_format.save_handx(path, clips)
    return path, clips


def test_cli_annotate_writes_both_formats_with_new_captions(tmp_path, capsys):
    src, clips = _src(tmp_path)
    out = str(tmp_path / "out" / "annotated.npz")
    events = str(tmp_path / "events.jsonl")
    code = cli.main(["annotate", "--src", src, "--out", out, "--backend", "rules",
                     "--seed", "3", "--events-out", events, "--no-progress"])
    assert code == 0
    handx = handx_format.load_handx(out)
    ours = store.load_clips(str(tmp_path / "out" / "annotated.clips.npz"))
    assert list(handx) == list(clips) == list(ours)
    docs = {}
    with open(events) as fh:
        for line in fh:
            item = json.loads(line)
            docs[item["clip"]] = item["events"]
    for name, clip in handx.items():
        np.testing.assert_array_equal(clip["motion"], clips[name]["motion"])
        assert clip["left_annotation"] == ours[name]["left_annotation"]
        triplets = [{"left": a, "right": b, "two_hands_relation": c} for a, b, c in zip(
            clip["left_annotation"], clip["right_annotation"], clip["interaction_annotation"])]
        assert triplets == R.describe(docs[name], seed=3, name=name)
    report = json.loads(open(out + ".report.json").read())
    assert report["annotated"] == len(clips) and report["failed"] == []


def test_cli_features_prints_one_clip(tmp_path, capsys):
    src, _ = _src(tmp_path, 2)
    assert cli.main(["features", src, "--clip", "c1", "--indent", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["frame_count"] == 60 and "two_hand_relationships" in doc
    assert cli.main(["features", src, "--clip", "nope"]) == 1


def test_output_paths():
    assert pipeline.output_paths("/x/a.clips.npz") == {"clips": "/x/a.clips.npz"}
    assert pipeline.output_paths("/x/a.npz") == {"handx": "/x/a.npz", "clips": "/x/a.clips.npz"}
    assert pipeline.output_paths("/x/a.npz", "handx") == {"handx": "/x/a.npz"}


def test_bad_motion_is_reported_with_file_and_clip(tmp_path, capsys):
    motion, _, _ = H.still_clip(frames=20)
    bad = motion.copy()
    bad[7, 1, 3, 2] = np.nan
    path = str(tmp_path / "bad.clips.npz")
    store.save_clips(path, {"fine": {"motion": motion}, "broken": {"motion": bad}})
    assert cli.main(["features", path]) == 1
    err = capsys.readouterr().err
    assert path in err and "'broken'" in err and "frame 7" in err
    assert cli.main(["annotate", "--src", path, "--out", str(tmp_path / "o.clips.npz"),
                     "--no-progress"]) == 1
    assert "'broken'" in capsys.readouterr().err


def test_parallel_rules_equal_serial():
    from handx_jax.data.synthetic.generator import generate_chunk

    chunk = generate_chunk(2, "train", range(10))
    clips = {n: {"motion": m} for n, m in zip(chunk["names"], chunk["motion"])}
    docs, captions = pipeline.rules_docs_and_captions(clips, seed=3, workers=2, batch_size=4,
                                                      progress=False)
    assert docs == pipeline.clip_event_docs(clips, progress=False)
    assert list(captions) == list(clips)
    assert captions == {n: R.describe(d, seed=3, name=n) for n, d in docs.items()}
    none, same = pipeline.rules_docs_and_captions(clips, seed=3, workers=2, batch_size=4,
                                                  progress=False, docs=False)
    assert none is None and same == captions


def test_parallel_path_refuses_bad_motion_before_writing(tmp_path, capsys):
    """With the rules workers (> 256 clips) the input check runs while they compute; a clip
    in millimetres or with NaN is still refused by name and nothing is written."""
    motion, _, _ = H.still_clip(frames=8)
    clips = {f"c{i:03d}": {"motion": motion} for i in range(300)}
    for bad, value in (("c123", motion * 1000.0), ("c007", np.where(motion > 0.1, np.nan,
                                                                    motion))):
        src = str(tmp_path / f"{bad}.clips.npz")
        store.save_clips(src, {**clips, bad: {"motion": value.astype(np.float32)}})
        out = tmp_path / f"out_{bad}.clips.npz"
        code = cli.main(["annotate", "--src", src, "--out", str(out), "--workers", "2",
                         "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1 and f"clip '{bad}'" in err and src in err, err
        assert not out.exists()
