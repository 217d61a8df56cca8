"""Temporary files for atomic writes (write a temp name, then rename) with the usual mode.

`tempfile.mkstemp` creates its file with mode 0600 whatever the umask, and a rename keeps
that mode: datasets, tokenizers and statistics would be unreadable to other accounts (a
SLURM job user, a colleague). `mkstemp` here gives the file the mode `open()` would,
0666 less the process umask.
"""

from __future__ import annotations

import os
import tempfile
import threading

_LOCK = threading.Lock()


def process_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _LOCK:  # elsewhere: set and restore at once (os.umask has no pure read)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a new file gets from `open()`: 0666 less the umask."""
    return 0o666 & ~process_umask()


def mkstemp(**kwargs) -> tuple[int, str]:
    """`tempfile.mkstemp` whose file has the process's default mode instead of 0600."""
    fd, path = tempfile.mkstemp(**kwargs)
    try:
        os.fchmod(fd, default_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path
