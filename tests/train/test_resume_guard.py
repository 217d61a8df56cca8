"""Resume checks what it resumes: meaning-changing fields are refused with a diff before
anything is written; safe fields are logged; a corrupt newest checkpoint falls back to the
previous complete one, bit-identically to an uninterrupted run."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from handx_jax.commands import train as train_command
from handx_jax.train import checkpoint, loop, metrics_log
from tests.train import toy_task
from tests.train import subprocess_util as sp


def _config(steps=4, **train):
    c = loop.add_trainer_defaults(toy_task.get_config())
    c.train.steps, c.train.ckpt_every, c.train.log_every = steps, 2, 1
    for k, v in train.items():
        c.train[k] = v
    return c


def _files(workdir):
    return {p: open(p, "rb").read() for p in sorted(glob.glob(os.path.join(workdir, "*"))) if os.path.isfile(p)}


def test_batch_change_is_refused_with_a_diff_and_nothing_written(tmp_path, capsys):
    workdir = str(tmp_path)
    loop.train(_config(), workdir)
    before = _files(workdir)
    with pytest.raises(loop.ResumeConfigError, match=r"train.batch_size: 8 -> 16") as err:
        loop.train(_config(batch_size=16), workdir)
    assert "--config.allow_changed=train.batch_size" in str(err.value)
    assert _files(workdir) == before  # config.json untouched, no resume log
    # Through the command: one error line block, exit status 2, still nothing written.
    rc = train_command.main(["--config", sp.TOY_CONFIG, "--workdir", workdir, "--config.train.steps=4",
                             "--config.train.ckpt_every=2",
                             "--config.train.batch_size=16", "--config.train.seed=3"])
    err_text = capsys.readouterr().err
    assert rc == 2
    assert "train.batch_size: 8 -> 16" in err_text and "train.seed: 0 -> 3" in err_text
    assert _files(workdir) == before


def test_safe_and_allowed_changes_are_recorded(tmp_path):
    workdir = str(tmp_path)
    loop.train(_config(), workdir)
    loop.train(_config(steps=6), workdir)  # more steps: allowed
    lr = _config(steps=8, lr=1e-3)
    with pytest.raises(loop.ResumeConfigError, match="train.lr"):
        loop.train(lr, workdir)
    lr.allow_changed = "train.lr"
    loop.train(lr, workdir)
    log = [json.loads(line) for line in open(os.path.join(workdir, loop.RESUME_LOG))]
    assert [r["step"] for r in log] == [4, 6]
    assert log[0]["changes"] == [{"field": "train.steps", "old": 4, "new": 6}]
    assert {"field": "train.lr", "old": 3e-3, "new": 1e-3, "override": True} in log[1]["changes"]
    stored = json.load(open(os.path.join(workdir, "config.json")))
    assert stored["train"]["lr"] == 1e-3 and stored["train"]["steps"] == 8
    assert [r["step"] for r in metrics_log.read_metrics(workdir) if "loss" in r] == list(range(1, 9))


def _params(workdir):
    _, params, step = checkpoint.restore_params(workdir, ema=False)
    return step, jax.tree_util.tree_leaves(params)


def test_truncated_newest_checkpoint_falls_back_bit_identically(tmp_path, capsys):
    steps = 6
    reference, run = str(tmp_path / "reference"), str(tmp_path / "run")
    loop.train(_config(steps), reference)
    loop.train(_config(steps), run)
    # Damage the final checkpoint: truncate every array file of its state.
    state_files = [p for p in glob.glob(os.path.join(run, "checkpoints", str(steps), "state", "**", "*"),
                                        recursive=True) if os.path.isfile(p) and os.path.getsize(p) > 64]
    assert state_files
    for path in state_files:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    capsys.readouterr()
    loop.train(_config(steps), run)
    err = capsys.readouterr().err
    assert f"checkpoint {steps} in" in err and "unreadable, skipped" in err
    assert f"resuming from checkpoint {steps - 2}" in err
    assert os.listdir(os.path.join(run, checkpoint.SKIPPED_DIR))
    (sa, a), (sb, b) = _params(reference), _params(run)
    assert sa == sb == steps
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    ra = [r["loss"] for r in metrics_log.read_metrics(reference) if "loss" in r]
    rb = [r["loss"] for r in metrics_log.read_metrics(run) if "loss" in r]
    assert ra == rb and len(ra) == steps


def test_emptied_iterator_state_is_named(tmp_path, capsys):
    workdir = str(tmp_path)
    loop.train(_config(4), workdir)
    iterator_file = os.path.join(workdir, "checkpoints", "4", "data", "metadata")  # the JSON iterator state
    assert json.load(open(iterator_file))["iterator"]
    open(iterator_file, "w").close()
    capsys.readouterr()
    loop.train(_config(4), workdir)
    err = capsys.readouterr().err
    assert f"(empty file {iterator_file}; JSONDecodeError" in err, err
    assert "resuming from checkpoint 2" in err


def test_restore_params_skips_an_unreadable_newest_checkpoint(tmp_path, capsys):
    workdir = str(tmp_path)
    loop.train(_config(4), workdir)
    _, expected, _ = checkpoint.restore_params(workdir, step=2)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "4", "state", "**", "*"), recursive=True):
        if os.path.isfile(path) and os.path.getsize(path) > 64:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    capsys.readouterr()
    _, params, step = checkpoint.restore_params(workdir)
    assert step == 2 and "checkpoint 4 in" in capsys.readouterr().err
    for x, y in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_identity_filled_by_the_task_resumes_but_a_different_one_is_refused(tmp_path):
    """A sweep relaunch passes the same command line, where the text key is still empty (the
    task fills it in from the text tower): that resumes; a different filled key is refused."""
    workdir = str(tmp_path)
    first = _config()
    first.model.text_key = "tower-a"
    loop.train(first, workdir)
    again = _config(steps=6)
    again.model.text_key = ""
    assert loop.resume_changes(workdir, again)[0] == []
    loop.check_resume_identity(workdir, again)  # not filled yet: nothing to compare
    loop.train(again, workdir)
    other = _config(steps=8)
    other.model.text_key = "tower-b"
    with pytest.raises(ValueError, match="model.text_key"):
        loop.train(other, workdir)
