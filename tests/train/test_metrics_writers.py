"""TensorBoard and W&B writers beside metrics.jsonl: read back with each tool's own reader."""

import glob
import json
import os
import struct
import time

import pytest

from handx_jax.train import metrics_log


def _tensorboard_scalars(workdir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} through TensorBoard's own EventAccumulator (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(workdir, metrics_log.TENSORBOARD_DIRNAME), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _assert_same_scalars(workdir: str):
    """Every numeric field of every metrics.jsonl line is a TensorBoard scalar at its step."""
    scalars = _tensorboard_scalars(workdir)
    lines = metrics_log.read_metrics(workdir)
    expected = {(metrics_log.tensorboard_tag(key), rec["step"]): value for rec in lines for key, value in metrics_log.scalar_items(rec).items()}
    got = {(tag, step): value for tag, by_step in scalars.items() for step, value in by_step.items()}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-30), key  # TensorBoard stores float32
    return scalars


def _toy_config():
    """One toy config for both training tests (one compiled step, reused through the cache)."""
    from handx_jax.train import loop
    from tests.train.toy_task import get_config

    config = loop.add_trainer_defaults(get_config())
    config.train.steps, config.train.ckpt_every = 6, 6
    return config


def test_training_writes_tensorboard_matching_metrics_jsonl_and_survives_a_failing_writer(tmp_path, monkeypatch,
                                                                                          capsys):
    from handx_jax.eval import report
    from handx_jax.train import loop

    class Broken:
        name = "Broken"

        def write(self, record):
            raise RuntimeError("event file went away")

        def close(self):
            pass

    class WithBroken(metrics_log.SideWriters):  # the run's writers plus one that fails on every line
        def __init__(self, factories):
            super().__init__(list(factories) + [("Broken", Broken)])

    monkeypatch.setattr(metrics_log, "SideWriters", WithBroken)
    config = _toy_config()
    workdir = str(tmp_path / "run")
    result = loop.train(config, workdir)
    assert result["final_step"] == 6  # training went on
    assert capsys.readouterr().err.count("Broken logging failed (RuntimeError: event file went away)") == 1
    monkeypatch.undo()
    report.append_metrics(workdir, {"step": 6, "eval/R@3": 0.375, "eval/R@3_ci95": 0.01})
    scalars = _assert_same_scalars(workdir)
    assert sorted(scalars["loss"]) == [1, 2, 3, 4, 5, 6]
    assert scalars["eval/R_3"] == {6: 0.375}  # TensorBoard's tag for eval/R@3
    for key in ("grad_norm", "lr", "samples_seen", "flops_seen", "step_time"):
        assert key in scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(workdir, "tensorboard"))
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]  # the config as text
    assert config.train.wandb.project == ""  # defaults: W&B off
    assert not os.path.exists(os.path.join(workdir, metrics_log.WANDB_ID_FILE))


def test_resumed_run_replaces_tensorboard_steps_like_metrics_jsonl(tmp_path):
    workdir = str(tmp_path)
    metrics_log.write_json_atomic(os.path.join(workdir, "config.json"), {"train": {"steps": 6}})
    first = metrics_log.MetricsWriter(workdir, resume_step=0)
    for step in range(1, 6):
        first.write({"step": step, "loss": 1.0 / step, "wall_time": 1e9 + step})
    first.close()
    second = metrics_log.MetricsWriter(workdir, resume_step=3)  # resumed from the step-3 checkpoint
    for step in range(4, 7):
        second.write({"step": step, "loss": 10.0 + step, "wall_time": 2e9 + step})
    second.close()
    scalars = _assert_same_scalars(workdir)
    assert scalars["loss"] == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3, 4: 14.0, 5: 15.0, 6: 16.0})


def test_side_writers_never_block_and_report_a_failure_once(capsys):
    written = []

    class Slow:
        name = "slow"

        def write(self, record):
            time.sleep(0.2)
            written.append(record["step"])

        def close(self):
            pass

    class Broken(Slow):
        name = "broken"

        def write(self, record):
            raise OSError("disk full")

    writers = metrics_log.SideWriters([("slow", Slow), ("broken", Broken), ("unstartable", lambda: 1 / 0)])
    start = time.perf_counter()
    for step in range(5):
        writers.put({"step": step, "loss": 1.0})
    assert time.perf_counter() - start < 0.1  # the caller did not wait for the 1 s of writing
    writers.close()
    assert written == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert err.count("broken logging failed (OSError: disk full)") == 1
    assert err.count("unstartable logging failed (ZeroDivisionError") == 1
    assert set(writers.failures) == {"broken", "unstartable"}


def test_only_process_zero_writes(tmp_path):
    writer = metrics_log.MetricsWriter(str(tmp_path), resume_step=0, enabled=False)
    writer.write({"step": 1, "loss": 1.0})
    writer.close()
    assert os.listdir(tmp_path) == []


def _wandb_records(path: str):
    """Records of a W&B transaction log (`run-<id>.wandb`), decoded with wandb's protobufs.

    The file is a 7-byte header then 32 KiB blocks of chunks (crc32, little-endian length,
    type: 1 full, 2 first, 3 middle, 4 last), the LevelDB log layout W&B uses.
    """
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):
            break  # a chunk still being written
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _wandb_history(workdir: str, run_id: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", f"run-{run_id}.wandb"))):
        for record in _wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_writer_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv(metrics_log.WANDB_PROJECT_ENV, raising=False)
    workdir = str(tmp_path)
    config = {"train": {"steps": 3, "wandb": {"project": "handx-test", "entity": "", "name": "", "mode": ""}}}
    metrics_log.write_json_atomic(os.path.join(workdir, "config.json"), config)
    writer = metrics_log.MetricsWriter(workdir, resume_step=0)
    records = [{"step": s, "loss": 1.0 / s, "lr": 1e-3 * s, "wall_time": 1e9 + s} for s in (1, 2, 3)]
    for record in records:
        writer.write(record)
    writer.close()
    assert not writer_failures(writer)
    from handx_jax.eval import report

    report.append_metrics(workdir, {"step": 3, "eval/FID": 1.25})  # a later process continues the run
    run_id = open(os.path.join(workdir, metrics_log.WANDB_ID_FILE)).read().strip()
    # W&B's service process may still be writing the log when finish() returns: wait for it.
    deadline = time.monotonic() + 60
    history = _wandb_history(workdir, run_id)
    while not any("eval/FID" in row for row in history) and time.monotonic() < deadline:
        time.sleep(0.5)
        history = _wandb_history(workdir, run_id)
    logged = [{k: row[k] for k in ("step", "loss", "lr") if k in row} for row in history if "loss" in row]
    assert logged == [{k: r[k] for k in ("step", "loss", "lr")} for r in records]
    assert [row["eval/FID"] for row in history if "eval/FID" in row] == [1.25]
    assert len(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", f"run-{run_id}.wandb"))) == 2


def writer_failures(writer) -> dict:
    return {} if writer.side is None else writer.side.failures
