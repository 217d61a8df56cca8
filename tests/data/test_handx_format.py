"""HandX release format: independent files load; foreign pickles are refused unexecuted."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from handx_jax.data import handx_format

# An independent writer: plain numpy, no project code, as a HandX user would have it.
INDEPENDENT_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    rng = np.random.default_rng(7)
    clips = {}
    for i in range(3):
        t = 40 + 10 * i
        clips[f"clip_{i:03d}"] = {
            "motion": (rng.normal(size=(t, 2, 21, 3)) * 0.05).astype(np.float32),
            "left_annotation": [f"left {i} {k}" for k in range(5)],
            "right_annotation": [f"right {i} {k}" for k in range(5)],
            "interaction_annotation": [f"relation {i} {k}" for k in range(5)],
        }
    np.savez(sys.argv[1], **clips)
    np.save(sys.argv[1] + ".expected.npy", np.concatenate([c["motion"] for c in clips.values()]))
""")


def write_independent(path):
    subprocess.run([sys.executable, "-c", INDEPENDENT_WRITER, str(path)], check=True)
    return np.load(str(path) + ".expected.npy")


def test_independent_file_loads(tmp_path):
    path = tmp_path / "train_can_pos_all_wotextfeat.npz"
    expected = write_independent(path)
    clips = handx_format.load_handx(path)
    assert list(clips) == ["clip_000", "clip_001", "clip_002"]
    np.testing.assert_array_equal(np.concatenate([c["motion"] for c in clips.values()]), expected)
    assert clips["clip_001"]["right_annotation"][3] == "right 1 3"
    assert clips["clip_002"]["motion"].shape == (60, 2, 21, 3)


def test_save_then_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    clips = {"a": {"motion": rng.normal(size=(5, 2, 21, 3)),
                   "left_annotation": ["x", "y"], "right_annotation": ["é", "z"],
                   "interaction_annotation": ["", "w"]}}
    path = tmp_path / "out.npz"
    handx_format.save_handx(path, clips)
    back = handx_format.load_handx(path)
    np.testing.assert_array_equal(back["a"]["motion"], clips["a"]["motion"])
    assert back["a"]["motion"].dtype == np.float64
    assert back["a"]["right_annotation"] == ["é", "z"]
    assert not [p for p in os.listdir(tmp_path) if p != "out.npz"]  # no temp files left


class _Payload:
    """Pickles to a call that would create a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_foreign_pickle_refused_without_running(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.npz"
    good = {"motion": np.zeros((2, 2, 21, 3), np.float32), "left_annotation": ["a"],
            "right_annotation": ["b"], "interaction_annotation": ["c"]}
    np.savez(path, good_clip=good, evil_clip={"motion": _Payload(str(marker))})
    with pytest.raises(handx_format.HandXFormatError) as info:
        handx_format.load_handx(path)
    message = str(info.value)
    assert str(path) in message and "evil_clip" in message and "io.open" in message
    assert not marker.exists()
    # Sanity: the same file would create the marker through a plain unpickler.
    with np.load(path, allow_pickle=True) as data:
        data["evil_clip"]
    assert marker.exists()


class _Plain:
    pass


def test_foreign_class_instance_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, clip_x=_Plain())
    with pytest.raises(handx_format.HandXFormatError, match="clip_x.*_Plain"):
        handx_format.load_handx(path)


def test_restricted_unpickler_admits_numpy_scalars_and_refuses_os():
    value = {"n": np.float32(1.5), "a": np.arange(4, dtype=np.int16), "t": (1, 2.0, "s")}
    for protocol in (2, 3, 5):
        back = handx_format.restricted_loads(pickle.dumps(value, protocol=protocol))
        assert back["n"] == np.float32(1.5) and back["a"].dtype == np.int16
        assert back["t"] == (1, 2.0, "s")
    with pytest.raises(handx_format.UnsafePickleError, match="posix.system|os.system"):
        handx_format.restricted_loads(pickle.dumps(os.system))


def test_not_a_zip_names_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(handx_format.HandXFormatError, match="junk.npz"):
        handx_format.load_handx(path)


def test_mano_round_trip(tmp_path):
    poses = {"c": {"left_pose": np.ones((3, 48)), "right_pose": np.zeros((3, 48))}}
    handx_format.save_mano(tmp_path / "train_mano.npz", poses)
    back = handx_format.load_mano(tmp_path / "train_mano.npz")
    np.testing.assert_array_equal(back["c"]["left_pose"], poses["c"]["left_pose"])


def test_compressed_npz_and_numpy_scalars_load(tmp_path):
    path = tmp_path / "c.npz"
    record = {"motion": np.ones((2, 2, 21, 3)), "left_annotation": np.array(["a", "b"]),
              "right_annotation": ("c", "d"), "interaction_annotation": ["e", "f"],
              "fps": np.float32(30.0)}
    np.savez_compressed(path, only=record)
    clip = handx_format.load_handx(path)["only"]
    assert clip["left_annotation"] == ["a", "b"] and clip["right_annotation"] == ["c", "d"]
    assert clip["fps"] == np.float32(30.0)
    np.testing.assert_array_equal(clip["motion"], record["motion"])
