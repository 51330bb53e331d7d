"""fastmlp: train multilayer perceptrons on a CPU, fast (Numba-compiled training loop)."""

__version__ = "0.1.0"
