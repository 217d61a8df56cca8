"""`handx view`: a Rerun recording read back through Rerun's own RRD reader."""

import os

import numpy as np
import pytest

from handx_jax import cli
from handx_jax.data import store
from tests.viz._motion import CONTACT_FRAMES, clips_with_contact

rr = pytest.importorskip("rerun", reason="rerun-sdk is in the test extra: pip install -e '.[test]'")


def _frames_by_entity(path: str) -> dict[str, dict[int, object]]:
    """{entity path: {frame: that row's last component column}} from the recording."""
    out: dict[str, dict[int, object]] = {}
    for chunk in rr.chunk.RrdReader(path).stream().to_chunks():
        batch = chunk.to_record_batch()
        if "frame" not in batch.schema.names:
            out.setdefault(chunk.entity_path, {})
            continue
        frames = batch.column("frame").to_pylist()
        values = {name: batch.column(name).to_pylist() for name in batch.schema.names
                  if name.endswith(":positions") or name.endswith(":strips") or name.endswith(":scalars")}
        rows = out.setdefault(chunk.entity_path, {})
        for i, frame in enumerate(frames):
            rows[frame] = {name: column[i] for name, column in values.items()}
    return out


def test_view_writes_entities_frames_contacts_and_reference(tmp_path, capsys):
    clips = clips_with_contact(2)
    sample, reference = str(tmp_path / "s.clips.npz"), str(tmp_path / "r.clips.npz")
    store.save_clips(sample, clips)
    store.save_clips(reference, dict(list(clips.items())[1:]))
    assert cli.main(["view", sample, "--clip", "clip_0000", "--reference", reference]) == 0
    out = str(tmp_path / "s.rrd")
    assert f"open it with: rerun {out}" in capsys.readouterr().out
    entities = _frames_by_entity(out)
    for root in ("/clip_0000", "/reference"):
        for hand in ("left", "right"):
            assert sorted(entities[f"{root}/{hand}/joints"]) == list(range(60))
            assert sorted(entities[f"{root}/{hand}/bones"]) == list(range(60))
        assert f"{root}/captions" in entities
    joints = entities["/clip_0000/left/joints"]
    np.testing.assert_allclose(joints[7]["Points3D:positions"], clips["clip_0000"]["motion"][7, 0], atol=1e-6)
    bones = entities["/clip_0000/right/bones"][0]["LineStrips3D:strips"]
    assert len(bones) == 6 and all(len(strip) == 5 for strip in bones)  # 5 fingers, then the palm edge
    tips = entities["/clip_0000/contacts/tips"]
    in_contact = sorted(t for t, row in tips.items() if row["Points3D:positions"])
    assert in_contact == list(CONTACT_FRAMES)
    assert len(tips[12]["Points3D:positions"]) == 2  # left thumb tip and right index tip
    counts = entities["/clip_0000/contact_count"]
    assert [counts[t]["Scalars:scalars"] for t in (9, 10, 19, 20)] == [[0.0], [1.0], [1.0], [0.0]]
    assert not any(row["Points3D:positions"] for row in entities["/reference/contacts/tips"].values())


def test_view_names_a_missing_clip(tmp_path, capsys):
    path = str(tmp_path / "s.clips.npz")
    store.save_clips(path, clips_with_contact(1))
    assert cli.main(["view", path, "--clip", "nope"]) == 2
    assert f"{path} has no clip 'nope'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s.rrd")


def test_sample_view_records_every_sample(tmp_path, capsys):
    import argparse

    from handx_jax.commands import generate

    path = str(tmp_path / "samples.npz")
    store.save_clips(path, clips_with_contact(3))
    args = argparse.Namespace(view=True, out=path, reference=None, clip=None)
    assert generate._view(args, 0) == 0  # what `handx sample --view` runs after writing its samples
    assert "open it with: rerun" in capsys.readouterr().out
    entities = _frames_by_entity(str(tmp_path / "samples.rrd"))
    assert {f"/clip_{i:04d}/left/joints" for i in range(3)} <= set(entities)
    assert generate._view(argparse.Namespace(view=True, out=path), 1) == 1  # a failed run records nothing more
