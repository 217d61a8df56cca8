"""Readable skeleton animations of clips (T, 2, 21, 3) with matplotlib: MP4 or GIF.

Each panel is one clip (several samples, or a sample beside its reference): the axes are
fitted to that clip's motion with equal aspect (a centimetre is as long on every axis), each
finger has its own colour (both hands alike; the wrist and palm edge in the hand's colour,
"L"/"R" beside the wrists), fingertips in contact (closer than 2 cm) are ringed in gold and
joined, and the three captions are wrapped under the panel. MP4 when ffmpeg is on the PATH,
GIF otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import textwrap

import numpy as np

from handx_jax.hand import skeleton
from handx_jax.viz import contacts as contacts_lib
from handx_jax.viz import style

HAND_COLOURS = style.HAND_COLOURS  # left, right
MIN_HALF_RANGE = 0.03  # m: an axis never spans less than 6 cm (a still hand is not blown up)
MARGIN = 0.08  # fraction of the largest extent added around the motion
# Camera: from the front (-y) and well above, so the wrist-to-wrist x axis runs across the
# picture and the fingers, which point along +y, are seen spread rather than end-on.
VIEW_ELEVATION, VIEW_AZIMUTH = 55.0, -95.0
ZOOM = 0.95  # matplotlib leaves room for any rotation; the camera is fixed, so fill the panel


@dataclasses.dataclass
class Panel:
    """One animated panel: a motion (T, 2, 21, 3), a label above it, three captions below."""

    motion: np.ndarray
    label: str = ""
    captions: tuple[str, str, str] = ("", "", "")


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def output_path(out_path: str, fmt: str = "auto") -> str:
    """The path actually written: `fmt` 'gif'/'mp4', or 'auto' (the suffix of `out_path`
    when it names one, MP4 when ffmpeg is present, GIF otherwise; an MP4 asked for without
    ffmpeg becomes a GIF beside it)."""
    stem, ext = os.path.splitext(out_path)
    ext = ext.lower()
    if fmt == "auto":
        fmt = ext[1:] if ext in (".gif", ".mp4") else ("mp4" if ffmpeg_available() else "gif")
    if fmt not in ("gif", "mp4"):
        raise ValueError(f"render: format must be gif, mp4 or auto, got {fmt!r}")
    if fmt == "mp4" and not ffmpeg_available():
        fmt = "gif"
    base = stem if ext in (".gif", ".mp4") else out_path
    return f"{base}.{fmt}"


def fitted_limits(motion_tjc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per axis around the whole motion: its own extent per axis plus a margin, at
    least 2 * MIN_HALF_RANGE, so `set_box_aspect(hi - lo)` gives equal aspect without the
    empty space of a cube."""
    points = np.asarray(motion_tjc, np.float32).reshape(-1, 3)
    lo, hi = points.min(0), points.max(0)
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2 + MARGIN * float((hi - lo).max()), MIN_HALF_RANGE)
    return centre - half, centre + half


def panel_height_ratio(motion_tjc: np.ndarray) -> float:
    """Panel height / width that fits the fitted box as the camera sees it: flat, wide scenes
    (two hands side by side) get a low panel instead of empty space above and below."""
    lo, hi = fitted_limits(motion_tjc)
    extent = hi - lo
    seen_h = extent[2] * np.cos(np.deg2rad(VIEW_ELEVATION)) + extent[1] * np.sin(np.deg2rad(VIEW_ELEVATION))
    return float(np.clip(1.6 * seen_h / max(extent[0], extent[1]), 0.5, 1.0))


def caption_text(captions, width: int) -> str:
    """The three captions, each labelled and wrapped to `width` characters."""
    lines = []
    for label, text in zip(("Left", "Right", "Both"), captions):
        if text:
            lines += textwrap.wrap(f"{label}: {text}", width=width, subsequent_indent="   ")
    return "\n".join(lines)


def _check(motion) -> np.ndarray:
    motion = np.asarray(motion, np.float32)
    if motion.ndim != 4 or motion.shape[1:] != (2, 21, 3):
        raise ValueError(f"render: motion must be (T, 2, 21, 3), got {motion.shape}")
    if not np.all(np.isfinite(motion)):
        raise ValueError("render: motion holds NaN or Inf")
    return motion


class _PanelArtists:
    """The line and marker artists of one panel, updated per frame."""

    def __init__(self, ax, panel: Panel, motion: np.ndarray):
        self.ax, self.motion = ax, motion
        lo, hi = fitted_limits(motion)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(tuple(hi - lo), zoom=ZOOM)  # equal aspect: axis lengths proportional to ranges
        ax.view_init(elev=VIEW_ELEVATION, azim=VIEW_AZIMUTH)
        ax.set_proj_type("ortho")  # no perspective: equal lengths look equal across the panel
        ax.set_xlabel("x (m)", fontsize=6, labelpad=-8)
        ax.set_ylabel("y (m)", fontsize=6, labelpad=-8)
        ax.set_zlabel("z (m)", fontsize=6, labelpad=-8)
        ax.tick_params(labelsize=5, pad=-3)
        from matplotlib.ticker import MaxNLocator

        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MaxNLocator(4))
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.pane.set_alpha(0.15)
        if panel.label:
            ax.set_title("\n".join(textwrap.wrap(panel.label, 60)), fontsize=8, pad=0)
        self.fingers = [[ax.plot([], [], [], color=style.FINGER_COLOURS[f], lw=1.8, solid_capstyle="round")[0]
                         for f, _ in style.FINGER_CHAINS] for _ in range(2)]
        self.palms = [ax.plot([], [], [], color=HAND_COLOURS[h], lw=1.2)[0] for h in range(2)]
        self.wrists = [ax.plot([], [], [], "o", color=HAND_COLOURS[h], ms=4)[0] for h in range(2)]
        self.joints = [ax.plot([], [], [], ".", color="0.25", ms=2)[0] for _ in range(2)]
        self.labels = [ax.text(0, 0, 0, "LR"[h], color=HAND_COLOURS[h], fontsize=8, fontweight="bold")
                       for h in range(2)]
        self.contact_dots = ax.plot([], [], [], "o", mfc="none", mec=style.CONTACT_COLOUR, mew=1.6, ms=8)[0]
        self.contact_links = ax.plot([], [], [], color=style.CONTACT_COLOUR, lw=2.5)[0]
        self.contacts_tp = contacts_lib.tip_contacts(motion)
        self.status = ax.text2D(0.02, 0.93, "", transform=ax.transAxes, fontsize=6, color="0.3")

    def draw(self, t: int) -> None:
        t_clip = min(t, len(self.motion) - 1)  # a shorter clip holds its last frame
        frame = self.motion[t_clip]
        for h in range(2):
            joints = frame[h]
            for line, (_, chain) in zip(self.fingers[h], style.FINGER_CHAINS):
                pts = joints[list(chain)]
                line.set_data_3d(pts[:, 0], pts[:, 1], pts[:, 2])
            palm = joints[list(style.PALM_OUTLINE)]
            self.palms[h].set_data_3d(palm[:, 0], palm[:, 1], palm[:, 2])
            self.wrists[h].set_data_3d(joints[:1, 0], joints[:1, 1], joints[:1, 2])
            self.joints[h].set_data_3d(joints[:, 0], joints[:, 1], joints[:, 2])
            self.labels[h].set_position_3d(joints[0] - np.float32([0.0, 0.02, 0.0]))
        segments = contacts_lib.contact_segments(self.motion, self.contacts_tp, t_clip)  # (K, 2, 3)
        tips = segments.reshape(-1, 3)
        self.contact_dots.set_data_3d(tips[:, 0], tips[:, 1], tips[:, 2])
        links = np.concatenate([segments, np.full((len(segments), 1, 3), np.nan, np.float32)], axis=1).reshape(-1, 3)
        self.contact_links.set_data_3d(links[:, 0], links[:, 1], links[:, 2])
        n = len(segments)
        self.status.set_text(f"frame {t_clip + 1}/{len(self.motion)}" + (f"   {n} contact{'s' * (n > 1)}" if n else ""))


def _figure(panels: list[Panel], size: float):
    """The figure (panels side by side, wrapped captions under each) and its panel artists."""
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("render: no clips to draw")
    motions = [_check(p.motion) for p in panels]
    frames = max(len(m) for m in motions)
    texts = [caption_text(p.captions, max(30, int(size * 16))) for p in panels]
    caption_lines = max(t.count("\n") + 1 if t else 0 for t in texts)
    caption_h = 0.14 * caption_lines + (0.1 if caption_lines else 0)  # inches of text under the panels
    height = size * max(panel_height_ratio(m) for m in motions)
    fig = plt.figure(figsize=(size * len(panels), height + caption_h), dpi=100)
    bottom = caption_h / (height + caption_h)
    artists = []
    for i, (panel, motion, text) in enumerate(zip(panels, motions, texts)):
        ax = fig.add_axes([i / len(panels), bottom, 1 / len(panels), 1 - bottom], projection="3d")
        artists.append(_PanelArtists(ax, panel, motion))
        if text:
            fig.text((i + 0.03) / len(panels), bottom - 0.01, text, fontsize=7, va="top", ha="left")
    return fig, artists


def render_panels(panels: list[Panel], out_path: str, *, fps: int = skeleton.FPS, size: float = 3.6,
                  fmt: str = "auto", progress: bool = False) -> str:
    """Animate `panels` side by side into one MP4 or GIF (atomic write); returns the path
    written (see `output_path`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    path = output_path(out_path, fmt)
    fig, artists = _figure(panels, size)
    frames = max(len(a.motion) for a in artists)

    def draw(t):
        for a in artists:
            a.draw(t)
        return []

    anim = animation.FuncAnimation(fig, draw, frames=frames, interval=1000 / fps, blit=False)
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp_", suffix=suffix)
    os.close(fd)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=frames, desc="render", unit="frame")
    try:
        writer = (animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])
                  if suffix == ".mp4" else animation.PillowWriter(fps=fps))
        anim.save(tmp, writer=writer, progress_callback=(lambda i, n: bar.update(1)) if bar else None)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if bar is not None:
            bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def render_frame(panels: list[Panel], out_png: str, frame: int, *, size: float = 3.6) -> str:
    """One frame of the animation as a PNG (reports, before/after comparisons)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, artists = _figure(panels, size)
    try:
        for a in artists:
            a.draw(frame)
        tmp = f"{out_png}.tmp{os.getpid()}.png"
        fig.savefig(tmp)
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
    return out_png


def render_gif(motion_tjc: np.ndarray, out_path: str, *, title: str = "", fps: int = skeleton.FPS,
               size: float = 5.0, captions: tuple[str, str, str] | None = None) -> str:
    """One clip as a GIF (the label `title` above it, `captions` wrapped below); returns the path."""
    return render_panels([Panel(motion_tjc, title, tuple(captions) if captions else ("", "", ""))], out_path,
                         fps=fps, size=size, fmt="gif")
