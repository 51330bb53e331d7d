"""fastmlp: train multilayer perceptrons on a CPU, fast (Numba-compiled training loop).

`fastmlp.MLPClassifier` and `fastmlp.MLPRegressor` (scikit-learn estimators,
fastmlp/estimator.py) are imported on first use, so `fastmlp train` never loads
scikit-learn."""

from .version import __version__
__all__ = ["MLPClassifier", "MLPRegressor"]


def __getattr__(name):
    if name in __all__:
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
