"""Keep XLA's CPU buffers in the process heap instead of mapping them afresh every step.

XLA's CPU runtime allocates an executable's temporaries (hundreds of MB for a training
step) with `posix_memalign` from the malloc arena of whichever worker thread runs it. glibc
serves every block above its mmap threshold (32 MiB at most), and every block too big for a
per-thread arena's 64 MiB heap, with a fresh `mmap`, and unmaps it on `free`. So each step
faults its whole temporary buffer in again, page by page: for diffusion XS at batch 64 that
is 112k minor page faults and 0.2 CPU-seconds of kernel time in a 0.7 s step.

`tune_malloc()` makes glibc keep those pages for reuse: a single arena (the main heap grows
without a size cap), no `mmap` for large blocks, and no trimming of the heap's top. It must run
before the first JAX computation: `jax_setup.setup()`, which every command and benchmark that
runs JAX calls first, applies it, and so does the test suite. It applies on glibc Linux when
XLA computes on the CPU (no CUDA, ROCm or TPU plugin installed, or `JAX_PLATFORMS=cpu`);
HANDX_MALLOC_TUNING=0 turns it off, =1 forces it.
The price: memory freed by one stage stays with the process (its peak RSS), not returned to
the system.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

ENV = "HANDX_MALLOC_TUNING"
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
NEVER_TRIM = -1  # read by glibc as (size_t)-1: the heap top is never given back
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm6_plugin", "jax_rocm7_plugin",
                       "jax_rocm60_plugin", "libtpu")

_applied: bool | None = None


def computes_on_cpu(environ=os.environ) -> bool:
    """True when JAX will run XLA on the host: JAX_PLATFORMS names only `cpu`, or it is unset
    and no accelerator plugin is installed."""
    platforms = [p.strip() for p in environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    if platforms:
        return all(p == "cpu" for p in platforms)
    return not any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_PLUGINS)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return None


def tune_malloc(environ=os.environ) -> bool:
    """Apply the settings above once per process; returns whether they are in force."""
    global _applied
    if _applied is not None:
        return _applied
    choice = environ.get(ENV, "").strip()
    wanted = choice == "1" or (choice != "0" and computes_on_cpu(environ))
    mallopt = _glibc() if wanted else None
    if mallopt is None:
        _applied = False
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in
                   ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM)))
    return _applied
