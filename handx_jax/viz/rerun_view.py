"""Motions as Rerun recordings (`.rrd`): orbit both hands in 3-D and scrub the timeline.

Per clip, under `/<name>/`: `left|right/joints` (points coloured by finger), `left|right/bones`
(one polyline per finger plus the palm's edge), `contacts` (fingertips in contact, and the
segments between the touching pairs), `contact_count` (a scalar per frame) and `captions`
(the three descriptions, static). Frames are on the `frame` timeline (and `time`, seconds at
30 fps). Each clip gets its own 3-D view, side by side, with its captions below. Needs the
optional `rerun-sdk` (`pip install -e '.[view]'`); open the file with `rerun FILE.rrd`.
"""

from __future__ import annotations

import os

import numpy as np

from handx_jax.hand import skeleton
from handx_jax.viz import contacts as contacts_lib
from handx_jax.viz.clips import ShownClip
from handx_jax.viz import style

def _require_rerun():
    try:
        import rerun
    except ImportError as err:
        raise RuntimeError("3-D viewing needs rerun-sdk: pip install -e '.[view]'") from err
    return rerun


def _check(clip: ShownClip) -> np.ndarray:
    motion = np.asarray(clip.motion, np.float32)
    if motion.ndim != 4 or motion.shape[1:] != (2, 21, 3):
        raise ValueError(f"view: clip {clip.name!r} motion must be (T, 2, 21, 3), got {motion.shape}")
    if not np.all(np.isfinite(motion)):
        raise ValueError(f"view: clip {clip.name!r} motion holds NaN or Inf")
    return motion


def _caption_markdown(captions) -> str:
    left, right, relation = captions
    return (f"**left:** {left or '-'}\n\n**right:** {right or '-'}\n\n**two hands:** {relation or '-'}")


def _blueprint(rr, names: list[str]):
    import rerun.blueprint as rrb

    columns = [rrb.Vertical(rrb.Spatial3DView(origin=f"/{name}", name=name),
                            rrb.TextDocumentView(origin=f"/{name}/captions", name=f"{name} captions"),
                            row_shares=[4, 1]) for name in names]
    return rrb.Blueprint(rrb.Horizontal(*columns), collapse_panels=True)


def write_recording(out_path: str, clips: list[ShownClip], *, fps: int = skeleton.FPS,
                    application_id: str = "handx_view") -> dict:
    """Write `clips` to one `.rrd` (atomically: temp name, then rename); returns a summary
    `{"path", "clips", "frames": {name: T}, "contact_frames": {name: frames with a contact}}`."""
    rr = _require_rerun()
    if not clips:
        raise ValueError("view: no clips to record")
    names = [c.name for c in clips]
    if len(set(names)) != len(names):
        raise ValueError(f"view: clip names must differ, got {names}")
    motions = [_check(c) for c in clips]
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".tmp_{os.getpid()}_{os.path.basename(out_path)}")
    rec = rr.RecordingStream(application_id)
    rec.save(tmp)
    summary = {"path": out_path, "clips": names, "frames": {}, "contact_frames": {}}
    try:
        rec.log("/", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.send_blueprint(_blueprint(rr, names))
        for clip, motion in zip(clips, motions):
            contact_tp = _log_clip(rr, rec, clip, motion, fps)
            summary["frames"][clip.name] = int(len(motion))
            summary["contact_frames"][clip.name] = int(contact_tp.any(axis=1).sum())
        rec.flush()
    finally:
        rec.disconnect()
    os.replace(tmp, out_path)
    return summary


def _log_clip(rr, rec, clip: ShownClip, motion: np.ndarray, fps: int) -> np.ndarray:
    root = f"/{clip.name}"
    rec.log(f"{root}/captions", rr.TextDocument(_caption_markdown(clip.captions), media_type="text/markdown"),
            static=True)
    joint_rgb = [[style.rgb(c) for c in style.joint_colours(h)] for h in range(2)]
    strip_rgb = [style.rgb(style.FINGER_COLOURS[f]) for f, _ in style.FINGER_CHAINS]
    strip_rgb += [style.rgb(style.HAND_COLOURS[h]) for h in range(2)]  # palm edge, per hand (below)
    contact_tp = contacts_lib.tip_contacts(motion)
    tip_hand_joint = contacts_lib.TIP_JOINTS
    for t in range(len(motion)):
        rec.set_time("frame", sequence=t)
        rec.set_time("time", duration=t / fps)
        for h, hand in enumerate(style.HAND_NAMES):
            joints = motion[t, h]
            rec.log(f"{root}/{hand}/joints", rr.Points3D(joints, colors=joint_rgb[h], radii=0.004))
            strips = [joints[list(chain)] for _, chain in style.FINGER_CHAINS] + [joints[list(style.PALM_OUTLINE)]]
            rec.log(f"{root}/{hand}/bones", rr.LineStrips3D(strips, colors=strip_rgb[:5] + [strip_rgb[5 + h]],
                                                           radii=0.002))
        touching = np.unique(contacts_lib.TIP_PAIRS[contact_tp[t]].reshape(-1))
        tips = motion[t, tip_hand_joint[touching, 0], tip_hand_joint[touching, 1]].reshape(-1, 3)
        rec.log(f"{root}/contacts/tips", rr.Points3D(tips, colors=style.rgb(style.CONTACT_COLOUR), radii=0.008))
        rec.log(f"{root}/contacts/links", rr.LineStrips3D(contacts_lib.contact_segments(motion, contact_tp, t),
                                                          colors=style.rgb(style.CONTACT_COLOUR), radii=0.003))
        rec.log(f"{root}/contact_count", rr.Scalars(float(contact_tp[t].sum())))
    return contact_tp

