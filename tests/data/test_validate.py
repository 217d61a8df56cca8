"""Validation: each malformed file kind exits non-zero through the CLI, naming the clip."""
import subprocess
import sys

import numpy as np
import pytest

from handx_jax import cli
from handx_jax.data import validate

from tests.data._clips import plausible_clips, write_plain_handx


def _good(n=3):
    return plausible_clips(n, seed=1, lengths=(20,), k=3)


def _corrupt(kind):
    clips = _good()
    bad = clips["clip_0001"]
    if kind == "shape":
        bad["motion"] = bad["motion"][:, :, :20]
    elif kind == "nan":
        bad["motion"][3, 1, 5, 2] = np.nan
    elif kind == "inf":
        bad["motion"][0, 0, 0, 0] = np.inf
    elif kind == "millimetres":
        bad["motion"] = bad["motion"] * 1000.0
    elif kind == "unequal":
        bad["right_annotation"] = bad["right_annotation"][:2]
    elif kind == "missing_motion":
        del bad["motion"]
    elif kind == "missing_annotation":
        del bad["interaction_annotation"]
    elif kind == "not_str":
        bad["left_annotation"] = [1, 2, 3]
    elif kind == "not_dict":
        clips["clip_0001"] = bad["motion"]
    return clips


KINDS = {"shape": "shape", "nan": "NaN", "inf": "non-finite", "millimetres": "scale",
         "unequal": "unequal", "missing_motion": "missing", "missing_annotation": "missing",
         "not_str": "str", "not_dict": "expected a dict"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_malformed_kind_fails_naming_clip(tmp_path, capsys, kind):
    path = tmp_path / "train_can_pos_all_wotextfeat.npz"
    write_plain_handx(path, _corrupt(kind))
    code = cli.main(["data", "validate", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    problem_lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert problem_lines and all("clip_0001" in line for line in problem_lines), out
    assert KINDS[kind] in out


def test_empty_file_fails(tmp_path, capsys):
    path = tmp_path / "empty.npz"
    np.savez(path)
    assert cli.main(["data", "validate", str(path)]) == 1
    assert "empty" in capsys.readouterr().out


def test_valid_file_reports_counts_and_exits_zero(tmp_path, capsys):
    path = tmp_path / "train_can_pos_all_wotextfeat.npz"
    write_plain_handx(path, _good())
    assert cli.main(["data", "validate", str(path), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 clips, 60 frames, 9 annotations: OK" in out


def test_foreign_pickle_fails_in_a_real_process(tmp_path):
    marker = tmp_path / "marker"
    script = (
        "import numpy as np, sys\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        "        return (open, (sys.argv[2], 'w'))\n"
        "np.savez(sys.argv[1], clip_evil={'motion': Evil()})\n")
    path = tmp_path / "evil.npz"
    subprocess.run([sys.executable, "-c", script, str(path), str(marker)], check=True)
    result = subprocess.run([sys.executable, "-m", "handx_jax.cli", "data", "validate",
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "clip_evil" in result.stdout and "refused" in result.stdout
    assert not marker.exists()


def test_problems_of_all_clips_reported_together(tmp_path, capsys):
    clips = _good(4)
    clips["clip_0000"]["left_annotation"] = [b"x", 5, "z"][1:]
    clips["clip_0002"]["motion"] = clips["clip_0002"]["motion"] * 100.0
    path = tmp_path / "two_bad.npz"
    write_plain_handx(path, clips)
    assert cli.main(["data", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 problems" in out and "clip_0000" in out and "clip_0002" in out


def test_problem_fields():
    clips = _corrupt("nan")
    problems = validate.validate_clips(clips, "f.npz")
    assert [(p.file, p.clip, p.field) for p in problems] == [("f.npz", "clip_0001", "motion")]
    assert "frame 3, hand 1, joint 5" in problems[0].message
    assert validate.validate_clips(_good(), "f.npz") == []
