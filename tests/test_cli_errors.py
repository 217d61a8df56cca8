"""User errors: one line `error: ...` and exit 2, never a traceback (unless --debug or
HANDX_DEBUG=1); argument, prompt-file, data-scale and run-directory checks."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from handx_jax import cli
from handx_jax.data import store
from handx_jax.scaling import analysis
from handx_jax.scaling import runs as runs_lib

from tests.data._clips import plausible_clips


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_user_error_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "nope.py"),
                     "--workdir", str(tmp_path / "w")]) == 2
    assert "config file not found" in _one_error_line(capsys)


def test_debug_flag_and_environment_show_the_traceback(tmp_path, monkeypatch):
    argv = ["train", "--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path / "w")]
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", *argv])
    monkeypatch.setenv("HANDX_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(argv)


def test_console_script_prints_no_traceback(tmp_path):
    """The real entry point, in its own process: one stderr line, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from handx_jax import cli; sys.exit(cli.main())",
         "train", "--config", str(tmp_path / "missing.py"), "--workdir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HANDX_DEBUG": ""})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: config file not found: {str(tmp_path / 'missing.py')!r}"]


@pytest.mark.parametrize("line, expected", [
    ('{"lft": "wave"}', "unknown key 'lft'; expected left, right, relation"),
    ('{"left": null, "right": "fist"}', "key 'left' is null, expected a string"),
    ('{"left": "wave", "relation": 3}', "key 'relation' is 3, expected a string"),
    ('["left", "wave"]', "not a JSON object"),
    ('{"left": "", "right": " "}', "every description is empty"),
])
def test_prompt_file_refused_naming_line_and_key(tmp_path, capsys, line, expected):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"left": "wave", "right": "fist", "relation": "apart"}\n\n' + line + "\n")
    rc = cli.main(["sample", "--workdir", str(tmp_path / "run"), "--prompts", str(prompts),
                   "--out", str(tmp_path / "out.npz")])
    assert rc == 2
    message = capsys.readouterr().err
    assert f"{prompts}:3: {expected}" in message, message
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5", "lots"])
def test_guidance_must_be_finite_and_non_negative(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--workdir", str(tmp_path), "--left", "wave",
                  "--guidance", value, "--out", str(tmp_path / "out.npz")])
    assert exit_info.value.code == 2
    assert "argument --guidance" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


def test_annotate_refuses_millimetre_data(tmp_path, capsys):
    clips = plausible_clips(2)
    for clip in clips.values():
        clip["motion"] = clip["motion"] * 1000.0
    src = tmp_path / "mm.clips.npz"
    store.save_clips(src, clips)
    out = tmp_path / "out.clips.npz"
    rc = cli.main(["annotate", "--src", str(src), "--out", str(out), "--no-progress"])
    assert rc != 0
    err = capsys.readouterr().err
    assert f"{src}: clip 'clip_0000': motion: implausible scale" in err
    assert "and 1 more clips" in err
    assert not out.exists()


def test_scaling_fit_names_runs_without_log_or_with_nan_metric(tmp_path, capsys):
    root = tmp_path / "sweep"
    for i, n in enumerate((1e6, 4e6, 1.6e7, 6.4e7)):
        runs_lib.write_synthetic_run(str(root / f"run{i}"), size=f"S{i}", params=n, flops=6 * n * 1e4,
                                     samples=1e4, metrics={"R@3": 0.1 + 0.05 * i})
    runs_lib.write_synthetic_run(str(root / "nan_run"), size="X", params=2e6, flops=1.2e11,
                                 samples=1e4, metrics={"R@3": float("nan")})
    (root / "no_log").mkdir()
    (root / "no_log" / "config.json").write_text(json.dumps({"size": "Y"}))
    table = runs_lib.collect(runs_lib.load_runs([str(root)]), "R@3", "flops")
    assert len(table.runs) == 4 and np.isfinite(table.y).all()
    assert f"{root / 'no_log'} (no metrics.jsonl" in " ".join(table.skipped)
    assert f"{root / 'nan_run'} (metric R@3 is nan in metrics.jsonl)" in table.skipped
    result, _ = analysis.fit_runs([str(root)], metric="R@3", x="flops", form="loglinear",
                                  n_boot=10)
    err = capsys.readouterr().err
    assert "skipped run: " + str(root / "no_log") in err
    assert "skipped run: " + str(root / "nan_run") in err
    assert len(result.extra["skipped"]) == 2
