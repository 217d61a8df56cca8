"""Draw both hands' skeletons of a clip (T, 2, 21, 3) as an animated GIF with matplotlib."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from handx_jax.hand import skeleton

HAND_COLOURS = ("tab:blue", "tab:red")  # left, right


def render_gif(motion_tjc: np.ndarray, out_path: str, *, title: str = "", fps: int = 30, size: float = 4.0) -> str:
    """Write an animated GIF of both hands (left blue, right red); returns `out_path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    motion = np.asarray(motion_tjc, np.float32)
    if motion.ndim != 4 or motion.shape[1:] != (2, 21, 3):
        raise ValueError(f"render: motion must be (T, 2, 21, 3), got {motion.shape}")
    if not np.all(np.isfinite(motion)):
        raise ValueError("render: motion holds NaN or Inf")
    fig = plt.figure(figsize=(size, size))
    ax = fig.add_subplot(projection="3d")
    lo, hi = motion.reshape(-1, 3).min(0), motion.reshape(-1, 3).max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.05)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    if title:
        ax.set_title(title if len(title) <= 60 else title[:57] + "...", fontsize=7)
    lines = [[ax.plot([], [], [], color=HAND_COLOURS[h], lw=1.5)[0] for _ in skeleton.BONES] for h in range(2)]
    dots = [ax.plot([], [], [], "o", color=HAND_COLOURS[h], ms=2)[0] for h in range(2)]

    def draw(t):
        for h in range(2):
            joints = motion[t, h]
            for line, (a, b) in zip(lines[h], skeleton.BONES):
                line.set_data_3d(joints[[a, b], 0], joints[[a, b], 1], joints[[a, b], 2])
            dots[h].set_data_3d(joints[:, 0], joints[:, 1], joints[:, 2])
        return [l for hand in lines for l in hand] + dots

    anim = animation.FuncAnimation(fig, draw, frames=len(motion), interval=1000 / fps, blit=False)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp_", suffix=".gif")
    os.close(fd)
    try:
        anim.save(tmp, writer=animation.PillowWriter(fps=fps))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, out_path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return out_path
