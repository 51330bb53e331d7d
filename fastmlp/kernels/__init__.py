"""Numba kernels. Each has a plain NumPy twin in fastmlp/reference.py.

Choices reach the kernels as integer codes (the index in the registries of fastmlp.config),
branched outside the inner loops, so one compiled epoch serves every combination.
"""
