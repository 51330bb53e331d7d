"""Numba kernels. Each has a plain NumPy twin in fastmlp/reference.py.

Choices reach the kernels as integer codes and float settings in two arrays, both declared
in kernels/interface.py and branched on outside the inner loops, so one compiled epoch
serves every combination.

The compiled code is cached on disk in a directory named by a hash of every source file
of this package (KERNEL_CACHE_DIR). Numba's own cache notices an edit only in the file
that defines a kernel, not in a callee elsewhere (edit dense.py, and epoch.py's cached
train_epoch would keep the old layer); with the hash in the path, any edit here makes the
next run compile afresh, and going back to an earlier source finds its cache again.
"""
import hashlib
import os
from pathlib import Path

import numba
from numba import njit


def _kernel_cache_dir() -> str:
    """<user cache>/fastmlp/kernels/<hash of this package's sources, Numba's and Python's
    versions, the CPU's vector width and L2 size>; under $NUMBA_CACHE_DIR/fastmlp/ when that
    is set."""
    import platform
    import sys

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    from .machine import shape_key  # the tile's shape is generated from the CPU's

    digest.update(f"{numba.__version__} {sys.version} {platform.machine()} "
                  f"{shape_key()}".encode())
    if os.environ.get("NUMBA_CACHE_DIR"):
        base = Path(os.environ["NUMBA_CACHE_DIR"]) / "fastmlp"
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("fastmlp")) / "kernels"
    return str(base / digest.hexdigest()[:16])


KERNEL_CACHE_DIR = _kernel_cache_dir()


def kernel(**options):
    """The one way kernels are compiled: cached on disk in KERNEL_CACHE_DIR, and NumPy's
    error model (a float division by zero gives inf/nan instead of a Python exception check
    in every loop, which would also stop LLVM from vectorising divisions)."""

    def compile_kernel(function):
        # Numba picks a function's cache directory when it is decorated: point it at ours
        # for this function only (other Numba users of the process keep their own setting).
        previous = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = KERNEL_CACHE_DIR
        try:
            return njit(cache=True, error_model="numpy", **options)(function)
        finally:
            numba.config.CACHE_DIR = previous

    return compile_kernel
