"""Open a report in headless Chromium: a screenshot and the page's console messages.

Used by the tests (the report must load with no console error) and to look at a report on
a machine without a display. Needs a `chromium` (Debian's package) or `chromium-browser` /
`google-chrome` on the PATH; Chromium prints console messages to stderr with
`--enable-logging=stderr` as `...:CONSOLE:<line>] "<message>", source: <url> (<line>)`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)$")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: str, png_path: str, *, width: int = 1280, height: int = 2400,
               timeout: float = 120.0) -> list[str]:
    """Load `html_path` (a local file) in headless Chromium, save a `width` x `height`
    screenshot to `png_path`, and return the console messages the page produced."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no Chromium on the PATH (tried {', '.join(BROWSERS)}; Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="handx_chromium_") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
               f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={os.path.abspath(png_path)}", "file://" + os.path.abspath(html_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not os.path.isfile(png_path):
        raise RuntimeError(f"{browser} wrote no screenshot (rc={proc.returncode}): {proc.stderr[-500:]}")
    return [m.group(1) for line in proc.stderr.splitlines() if (m := _CONSOLE.search(line))]
