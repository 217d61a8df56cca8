"""Hold the OpenBLAS that numpy loaded to one thread in the calling process.

For process-pool workers that each own a core: OpenBLAS otherwise runs every large matrix
product on a thread per core in each worker, and its waiting threads spin, so two workers
on two cores burn about half their CPU time on each other's threads.
"""

from __future__ import annotations

import ctypes

# Thread-count functions by the names OpenBLAS builds export (numpy's wheels prefix theirs).
_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")


def _openblas() -> list[ctypes.CDLL]:
    """Every OpenBLAS library loaded in this process (none without /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = sorted({line.split()[-1] for line in fh
                            if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    libraries = []
    for path in paths:
        try:
            libraries.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libraries


def _function(library: ctypes.CDLL, verb: str):
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            found = getattr(library, f"{prefix}{verb}_num_threads{suffix}", None)
            if found is not None:
                return found
    return None


def one_thread() -> bool:
    """Set every OpenBLAS loaded in this process to one thread. False when none was found
    (another BLAS, or no /proc/self/maps to find it in): nothing is changed then."""
    found = False
    for library in _openblas():
        setter = _function(library, "set")
        if setter is not None:
            setter(1)
            found = True
    return found


def thread_counts() -> list[int]:
    """Threads of every OpenBLAS loaded in this process (empty when none was found)."""
    getters = [_function(library, "get") for library in _openblas()]
    return [int(get()) for get in getters if get is not None]
