"""`handx render`: fitted equal-aspect axes, contacts marked, wrapped captions, several panels."""

import numpy as np
import pytest
from PIL import Image

from handx_jax import cli
from handx_jax.data import store
from handx_jax.diffusion import render
from handx_jax.viz import style
from tests.viz._motion import clips_with_contact


def test_fitted_limits_hold_the_motion_with_equal_aspect():
    motion = clips_with_contact(1)["clip_0000"]["motion"]
    lo, hi = render.fitted_limits(motion)
    points = motion.reshape(-1, 3)
    assert np.all(points >= lo) and np.all(points <= hi)
    extent = points.max(0) - points.min(0)
    margin = render.MARGIN * extent.max()
    # Each axis spans its own extent plus the same margin (no cube of empty space), at least 6 cm.
    np.testing.assert_allclose(hi - lo, np.maximum(extent + 2 * margin, 2 * render.MIN_HALF_RANGE), rtol=1e-5)
    assert (hi - lo)[0] > 3 * (hi - lo)[2]  # two hands side by side: wide and flat, not a cube


def test_captions_are_labelled_and_wrapped():
    long = "the right index finger slides along the left palm while both wrists turn outwards " * 2
    text = render.caption_text(("waves", "", long), width=40)
    lines = text.split("\n")
    assert lines[0] == "Left: waves" and lines[1].startswith("Both: the right index")
    assert all(len(line) <= 40 for line in lines) and len(lines) >= 5
    assert "Right" not in text  # an empty caption is left out


def _gold_pixels(png: str) -> int:
    rgb = np.asarray(Image.open(png).convert("RGB"), np.int32)
    return int((np.abs(rgb - np.array(style.rgb(style.CONTACT_COLOUR))).sum(-1) < 60).sum())


def test_contacts_are_marked_only_on_contact_frames(tmp_path):
    clip = clips_with_contact(1)["clip_0000"]
    panels = [render.Panel(clip["motion"][:14], "clip_0000")]
    touching = render.render_frame(panels, str(tmp_path / "touch.png"), 12, size=2.5)
    apart = render.render_frame(panels, str(tmp_path / "apart.png"), 5, size=2.5)
    assert _gold_pixels(touching) > 20
    assert _gold_pixels(apart) == 0


def test_render_command_lays_out_sample_beside_reference(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(render, "ffmpeg_available", lambda: False)
    clips = {k: {**c, "motion": c["motion"][:6]} for k, c in clips_with_contact(2).items()}
    sample, reference = str(tmp_path / "s.clips.npz"), str(tmp_path / "r.clips.npz")
    store.save_clips(sample, clips)
    store.save_clips(reference, {"clip_0000": clips["clip_0001"]})
    out = str(tmp_path / "both")  # no suffix: MP4 if ffmpeg were present, else GIF
    assert cli.main(["render", sample, "--clip", "clip_0000", "--reference", reference, "--out", out,
                     "--size", "2", "--fps", "10"]) == 0
    assert "wrote " + out + ".gif" in capsys.readouterr().out
    gif = Image.open(out + ".gif")
    assert gif.size[0] == 400 and gif.n_frames == 6  # two panels of 2 inches at 100 dpi, every frame


def test_output_format_follows_ffmpeg(monkeypatch):
    monkeypatch.setattr(render, "ffmpeg_available", lambda: True)
    assert render.output_path("out/a") == "out/a.mp4"
    assert render.output_path("out/a.gif") == "out/a.gif"
    monkeypatch.setattr(render, "ffmpeg_available", lambda: False)
    assert render.output_path("out/a") == "out/a.gif"
    assert render.output_path("out/a.mp4") == "out/a.gif"
    with pytest.raises(ValueError, match="format must be gif, mp4 or auto"):
        render.output_path("a", "avi")


def test_render_names_a_missing_clip(tmp_path, capsys):
    path = str(tmp_path / "s.clips.npz")
    store.save_clips(path, clips_with_contact(1))
    assert cli.main(["render", path, "--clip", "nope", "--out", str(tmp_path / "x.gif")]) == 2
    assert f"{path} has no clip 'nope'" in capsys.readouterr().err
