"""A run keeps copies of its dataset's tokenizer and statistics with their hashes: a changed
dataset file refuses a resume and is named to the sampler; evaluation lines name the
evaluator and its hashes."""

import json
import os

import numpy as np
import pytest

from handx_jax.data import normalization
from handx_jax.eval import driver
from handx_jax.train import artifacts, loop
from tests.train import toy_task


def _data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "spm.model").write_bytes(b"tokenizer v1")
    stats = normalization.Stats(mean=np.arange(3, dtype=np.float32), std=np.ones(3, np.float32), count=10)
    normalization.save_stats(data / "stats_toy.npz", stats, "toy")
    return data


def _config(data, steps=2):
    c = loop.add_trainer_defaults(toy_task.get_config())
    c.data.dir = str(data)
    c.train.steps, c.train.ckpt_every = steps, 2
    return c


def test_run_copies_and_checks_its_artifacts(tmp_path):
    data, run = _data_dir(tmp_path), str(tmp_path / "run")
    loop.train(_config(data), run)
    record = artifacts.read_record(run)
    assert set(record["files"]) == {"spm.model", "stats_toy.npz"}
    copy = artifacts.run_file(run, "spm.model")
    assert open(copy, "rb").read() == b"tokenizer v1"
    assert record["files"]["spm.model"]["sha256"] == artifacts.sha256_file(str(data / "spm.model"))
    np.testing.assert_array_equal(artifacts.run_stats(run, _config(data)).mean, np.arange(3))

    (data / "spm.model").write_bytes(b"tokenizer v2, retrained")  # the dataset's tokenizer changes
    before = open(os.path.join(run, "config.json")).read()
    with pytest.raises(artifacts.ArtifactChanged, match="spm.model changed since"):
        loop.train(_config(data, steps=4), run)
    assert open(os.path.join(run, "config.json")).read() == before
    with pytest.raises(artifacts.ArtifactChanged, match="copy the run's file back"):
        artifacts.check_sources(run)
    assert open(artifacts.run_file(run, "spm.model"), "rb").read() == b"tokenizer v1"  # the run's copy holds


def test_evaluation_lines_name_the_evaluator(tmp_path):
    data, evaluator = _data_dir(tmp_path), str(tmp_path / "evaluator")
    loop.train(_config(data), evaluator)
    run = tmp_path / "model"
    run.mkdir()
    result = {"rows": {"model": {"R@3": {"mean": 0.3, "ci95": 0.01}}},
              "meta": {"replications": 1, "num_samples": 2, "evaluator_run": artifacts.identity(evaluator)}}
    driver.write_outputs(str(run), result, "model", 2)
    line = json.loads(open(run / "metrics.jsonl").read().splitlines()[-1])
    assert line["evaluator_run"] == os.path.abspath(evaluator) and line["evaluator_run_step"] == 2
    assert line["evaluator_spm.model_sha256"] == artifacts.sha256_file(str(data / "spm.model"))
    stored = json.load(open(run / "eval" / "metrics.json"))
    assert stored["meta"]["evaluator_run"]["stats_toy.npz_sha256"] == line["evaluator_stats_toy.npz_sha256"]
