"""One writer per run directory: an OS file lock held for the life of the process.

`hold(directory)` takes `fcntl.flock` on `<directory>/.handx.lock` and writes the holder's
host, pid, start time and a heartbeat into it. The kernel drops the lock when the process
ends, however it ends (SIGKILL included), so a lock held by a dead process on this host is
simply free. Across hosts (a shared filesystem whose flock may not reach other machines)
the heartbeat is a lease: the holder rewrites it every `lease / 3` seconds, and a lock whose
file names a live lease on another host is refused even when the flock was granted; a lease
older than `lease` seconds has expired and the lock is taken over with a message.

A second writer gets `RunLockedError` at once, naming the holder. Locks are re-entrant
within a process (a command that locks its directory may call a library function that
locks it again).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time

LOCK_NAME = ".handx.lock"
LEASE_ENV = "HANDX_LOCK_LEASE_S"
DEFAULT_LEASE_S = 120.0
EXIT_LOCKED = 75  # EX_TEMPFAIL: another process is writing this directory


class RunLockedError(RuntimeError):
    """Another process holds the directory; the message names it."""


def lease_seconds() -> float:
    return float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_S)


def lock_path(directory: str) -> str:
    return os.path.join(os.path.abspath(directory), LOCK_NAME)


def read_holder(directory: str) -> dict | None:
    """The holder record in the lock file (None when free, empty or unreadable)."""
    try:
        with open(lock_path(directory)) as f:
            text = f.read()
    except OSError:
        return None
    try:
        record = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def describe(record: dict | None) -> str:
    if not record:
        return "an unknown process"
    return (f"pid {record.get('pid')} on host {record.get('host')} (started {record.get('started')}, "
            f"command: {record.get('command', '?')})")


class _Held:
    def __init__(self, directory: str, fd: int, record: dict, lease: float):
        self.directory, self.fd, self.record, self.lease = directory, fd, record, lease
        self.count = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"run-lock {directory}", daemon=True)
        self._thread.start()

    def write(self) -> None:
        self.record["heartbeat"] = time.time()
        data = (json.dumps(self.record) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def _beat(self) -> None:
        while not self._stop.wait(max(self.lease / 3.0, 0.05)):
            try:
                self.write()
            except OSError:
                pass  # a full or vanished disk: the flock still holds on this host

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            os.ftruncate(self.fd, 0)  # an empty file reads as free
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


_HELD: dict[str, _Held] = {}
_HELD_LOCK = threading.Lock()


def acquire(directory: str, *, lease: float | None = None, what: str | None = None) -> None:
    """Lock `directory` (created if missing) for this process, or raise RunLockedError."""
    directory = os.path.abspath(directory)
    lease = lease_seconds() if lease is None else float(lease)
    with _HELD_LOCK:
        held = _HELD.get(directory)
        if held is not None:
            held.count += 1
            return
        os.makedirs(directory, exist_ok=True)
        path = lock_path(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"{directory} is in use by {describe(read_holder(directory))}; "
                                 f"a second writer is refused (lock file {path})") from None
        try:
            previous = read_holder(directory)
            host = socket.gethostname()
            if previous and previous.get("host") != host:
                age = time.time() - float(previous.get("heartbeat") or 0.0)
                if age < float(previous.get("lease") or lease):
                    raise RunLockedError(
                        f"{directory} is in use by {describe(previous)}: its lease was renewed {age:.0f} s ago "
                        f"(expires after {float(previous.get('lease') or lease):.0f} s); a second writer is refused "
                        f"(lock file {path})")
                print(f"run lock: taking over {path} from {describe(previous)}: its lease expired "
                      f"{age:.0f} s ago", file=sys.stderr)
            record = {"host": host, "pid": os.getpid(),
                      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "command": what or " ".join(os.path.basename(a) if i == 0 else a
                                                  for i, a in enumerate(sys.argv))[:300],
                      "lease": lease}
            held = _Held(directory, fd, record, lease)
            held.write()
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        _HELD[directory] = held


def release(directory: str) -> None:
    """Undo one `acquire` of `directory` by this process."""
    directory = os.path.abspath(directory)
    with _HELD_LOCK:
        held = _HELD.get(directory)
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            del _HELD[directory]
            held.release()


def is_held(directory: str) -> bool:
    return os.path.abspath(directory) in _HELD


@contextlib.contextmanager
def hold(directory: str, *, lease: float | None = None, what: str | None = None):
    """`with hold(dir): ...` keeps `dir` locked for the block (and across nested holds)."""
    acquire(directory, lease=lease, what=what)
    try:
        yield
    finally:
        release(directory)
