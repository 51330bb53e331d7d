"""Numba kernels. Each has a plain NumPy twin in fastmlp/reference.py.

Choices reach the kernels as integer codes (the index in the registries of fastmlp.config),
branched outside the inner loops, so one compiled epoch serves every combination.
"""

from numba import njit


def kernel(**options):
    """The one way kernels are compiled: cached on disk, and NumPy's error model (a float
    division by zero gives inf/nan instead of a Python exception check in every loop, which
    would also stop LLVM from vectorising divisions)."""
    return njit(cache=True, error_model="numpy", **options)
