"""fastmlp: train multilayer perceptrons on a CPU, fast (Numba-compiled training loop).

`fastmlp.MLPClassifier` (a scikit-learn estimator, fastmlp/estimator.py) is imported on
first use, so `fastmlp train` never loads scikit-learn."""

from .version import __version__
__all__ = ["MLPClassifier"]


def __getattr__(name):
    if name == "MLPClassifier":
        from .estimator import MLPClassifier

        return MLPClassifier
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
