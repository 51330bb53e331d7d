"""Kernel edits can't go stale: the compiled kernels' disk cache is keyed by a hash of every
source file of fastmlp/kernels/ (kernels.KERNEL_CACHE_DIR). Numba's own cache sees an edit
only in the file that defines a kernel; here the edit is in a callee's file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# dense_forward (kernels/dense.py) calls bias_activate (kernels/activations.py)
PROGRAM = """if True:
    import numpy as np
    from fastmlp.kernels import KERNEL_CACHE_DIR
    from fastmlp.kernels.dense import dense_forward
    from fastmlp.kernels.interface import IDENTITY
    out = np.empty((2, 3))
    dense_forward(out, np.ones((2, 4)), np.ones((4, 3)), np.zeros(3), IDENTITY, 0.0)
    print(out[0, 0], sum(dense_forward.stats.cache_hits.values()), KERNEL_CACHE_DIR)
"""


def run_copy(root: Path) -> tuple:
    """(dense_forward's first output, cache hits, cache directory) in a fresh process that
    imports the copy of fastmlp under root."""
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(root / "numba-cache"))
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    value, hits, directory = done.stdout.split()
    return float(value), int(hits), directory


def test_editing_a_callee_kernel_file_compiles_afresh(tmp_path):
    shutil.copytree(REPO / "fastmlp", tmp_path / "fastmlp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    first = run_copy(tmp_path)
    assert first[:2] == (4.0, 0)  # compiled: 1 + 1 + 1 + 1, no cache yet
    assert Path(first[2]).is_relative_to(tmp_path / "numba-cache")
    assert run_copy(tmp_path) == (4.0, 1, first[2])  # the cached kernel, unchanged source

    activations = tmp_path / "fastmlp" / "kernels" / "activations.py"
    source = activations.read_text()
    identity = "row[j] = row[j] + bias[j]\n"
    assert source.count(identity) == 1
    activations.write_text(source.replace(identity, "row[j] = row[j] + bias[j] + 1.0\n"))
    edited = run_copy(tmp_path)
    assert edited[:2] == (5.0, 0) and edited[2] != first[2]  # the edit, freshly compiled

    activations.write_text(source)  # back to the first source: its cache is found again
    assert run_copy(tmp_path) == (4.0, 1, first[2])
