"""The figures of a set's predictions, per task, weighted by the rows' weights (as
scikit-learn's metrics with sample_weight): what the epoch line, metrics.jsonl,
summary.json, evaluate, sweeps and the estimators' score report.

    classification  accuracy                    the weighted share of rows whose class is right
    multilabel      accuracy, f1                every label of a row right (scikit-learn's
                                                score); F1 per label, averaged over labels
    regression      rmse, mae, r2               sqrt(mean (z - y)^2), mean |z - y| (over rows
                                                and targets), R^2 = 1 - SS_res / SS_tot
                                                per target, averaged over targets

RMSE has no factor 1/2 (the squared_error loss does: kernels/losses.py).
"""
from __future__ import annotations

import numpy as np

# Each task's figures, and the direction in which each (and the loss) is better. Every figure
# is named val_<name> / test_<name> in records.
TASK_METRICS = {"classification": ("accuracy",), "multilabel": ("accuracy", "f1"),
                "regression": ("rmse", "mae", "r2")}
HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "rmse": False, "mae": False, "r2": True,
                    "loss": False}

AUTO_MONITOR = "auto"
# What --keep best and --patience watch by default: classification's figure of old, the F1
# of multilabel (a whole row right is rare with many labels), the loss of regression (what
# it trains on; for squared_error the same epoch as the lowest RMSE).
DEFAULT_MONITOR = {"classification": "val_accuracy", "multilabel": "val_f1",
                   "regression": "val_loss"}
MONITORS = (AUTO_MONITOR, "val_loss") + tuple(
    f"val_{name}" for name in dict.fromkeys(n for names in TASK_METRICS.values() for n in names))


def monitors_of(task: str) -> tuple:
    """The validation figures a run of this task records (what --monitor may name)."""
    return ("val_loss",) + tuple(f"val_{name}" for name in TASK_METRICS[task])


def figure_of(name: str) -> str:
    """The figure a record's key names: val_rmse -> rmse, train_loss -> loss."""
    for prefix in ("val_", "train_", "test_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def higher_is_better(name: str) -> bool:
    return HIGHER_IS_BETTER[figure_of(name)]


def test_figure_of(metric: str) -> str:
    """The test set's counterpart of a validation or training figure (val_rmse -> test_rmse):
    what a sweep reports beside its metric."""
    return f"test_{figure_of(metric)}"


# Every figure a run records per epoch, by task: what a sweep's metric may name
RECORDED = {task: ("train_loss", "val_loss") + (("train_accuracy",) if task != "regression"
                                                 else ()) + tuple(f"val_{n}" for n in names)
            for task, names in TASK_METRICS.items()}


def _weights(weights, rows: int) -> np.ndarray:
    return np.ones(rows) if weights is None or len(weights) == 0 else np.asarray(
        weights, dtype=np.float64)


def task_metrics(task: str, y, outputs, predictions, weights=None) -> dict:
    """{name: value} of TASK_METRICS[task]. y: labels (N,) or targets (N, T); outputs: the
    output layer's values (N, K); predictions: the argmax of each row (classes)."""
    w = _weights(weights, len(y))
    if task == "classification":
        return {"accuracy": float((w * (predictions == y)).sum() / w.sum())}
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(y), -1)
    if task == "multilabel":
        truth, guess = y > 0.5, outputs > 0.5
        exact = (truth == guess).all(axis=1)
        true_pos = (w[:, None] * (truth & guess)).sum(axis=0)
        false_pos = (w[:, None] * (~truth & guess)).sum(axis=0)
        false_neg = (w[:, None] * (truth & ~guess)).sum(axis=0)
        denominator = 2 * true_pos + false_pos + false_neg
        f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos),
                       where=denominator > 0)
        return {"accuracy": float((w * exact).sum() / w.sum()), "f1": float(f1.mean())}
    if task == "regression":
        residual = outputs - y
        mean = (w[:, None] * y).sum(axis=0) / w.sum()
        ss_res = (w[:, None] * residual ** 2).sum(axis=0)
        ss_tot = (w[:, None] * (y - mean) ** 2).sum(axis=0)
        # scikit-learn's r2_score: a constant target scores 1 if predicted exactly, else 0
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res == 0, 1.0, 0.0))
        return {"rmse": float(np.sqrt((w[:, None] * residual ** 2).sum() / (w.sum() * y.shape[1]))),
                "mae": float((w[:, None] * np.abs(residual)).sum() / (w.sum() * y.shape[1])),
                "r2": float(r2.mean())}
    raise ValueError(f"unknown task {task!r}")
