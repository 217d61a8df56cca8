"""BLAS held to one thread in a process (what each rules worker does first)."""

import json
import subprocess
import sys

import pytest

CODE = """
import json
import numpy
from handx_jax.annotate import blas
before = blas.thread_counts()
found = blas.one_thread()
print(json.dumps([before, found, blas.thread_counts()]))
"""


def test_one_thread_sets_every_loaded_openblas_to_one():
    env = {"OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    before, found, after = json.loads(out)
    if not before:
        pytest.skip("numpy here is not linked to OpenBLAS")
    assert before == [2] * len(before)  # the environment's setting, read through ctypes
    assert found and after == [1] * len(before)
