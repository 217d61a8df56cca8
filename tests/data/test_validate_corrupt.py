"""`handx data validate` on damaged `.clips.npz` files: one line naming the file, no traceback."""
import json
import zipfile

import numpy as np
import pytest

from handx_jax import cli
from handx_jax.data import handx_format, store

from tests.data._clips import plausible_clips


def _members(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _meta(raw: bytes):
    return np.frombuffer(raw, dtype=np.uint8)


def _bad_crc(good, out):
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("motion.npy")
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 200] ^= 0xFF
    out.write_bytes(bytes(raw))


def _rewrite(change):
    def make(good, out):
        members = _members(good)
        change(members)
        np.savez(out, **members)
    return make


def _truncated(good, out):
    out.write_bytes(good.read_bytes()[:-300])


CORRUPT = {
    "bad_crc": (_bad_crc, "Bad CRC"),
    "bad_meta_json": (_rewrite(lambda m: m.update(meta_json=_meta(b"{oops"))), "not valid JSON"),
    "bad_utf8": (_rewrite(lambda m: m.update(meta_json=_meta(b'{"a": "\xff"}'))), "UTF-8"),
    "missing_key": (_rewrite(lambda m: m.pop("offsets")), "missing member 'offsets'"),
    "object_names": (_rewrite(lambda m: m.update(names=m["names"].astype(object))),
                     "names: cannot read"),
    "object_motion": (_rewrite(lambda m: m.update(motion=m["motion"].astype(object))),
                      "motion: cannot read"),
    "meta_not_lists": (_rewrite(lambda m: m.update(meta_json=_meta(json.dumps(
        {"annotations": {"left_annotation": 5}}).encode()))), "expected a list of 3"),
    "truncated": (_truncated, "cannot load"),
    "duplicate_names": (_rewrite(lambda m: m.update(names=np.array(["a", "a", "b"]))),
                        "duplicate clip names ('a' x2) in 3 rows"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_file_is_one_line_naming_it(tmp_path, capsys, kind):
    good = tmp_path / "good.clips.npz"
    store.save_clips(good, plausible_clips(3))
    bad = tmp_path / f"{kind}.clips.npz"
    make, expected = CORRUPT[kind]
    make(good, bad)
    assert cli.main(["data", "validate", str(bad)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    problems = [line for line in out.out.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, out.out
    assert str(bad) in problems[0] and expected in problems[0], problems[0]


def test_duplicate_names_never_collapse_on_load(tmp_path):
    path = tmp_path / "dup.clips.npz"
    store.save_clips(tmp_path / "good.clips.npz", plausible_clips(3))
    _rewrite(lambda m: m.update(names=np.array(["a", "b", "a"])))(tmp_path / "good.clips.npz",
                                                                   path)
    with pytest.raises(store.ClipStoreError, match="duplicate"):
        store.load_clips(path)
    with pytest.raises(store.ClipStoreError, match="duplicate"):
        store.load_clip_table(path)


def test_duplicate_member_in_handx_zip_is_refused(tmp_path):
    path = tmp_path / "dup_can_pos_all_wotextfeat.npz"
    clips = plausible_clips(2)
    handx_format.save_handx(path, clips)
    with zipfile.ZipFile(path) as archive:
        first = archive.read("clip_0000.npy")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("clip_0000.npy", first)
    with pytest.raises(handx_format.HandXFormatError, match="duplicate clip name"):
        handx_format.load_handx(path)


def test_empty_string_caption_reported(tmp_path, capsys):
    clips = plausible_clips(2)
    clips["clip_0001"]["interaction_annotation"][3] = "  "
    path = tmp_path / "blank.clips.npz"
    store.save_clips(path, clips)
    assert cli.main(["data", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "clip 'clip_0001': interaction_annotation: 1 empty caption(s), first at index 3" in out
