"""Learning-rate schedules: the rate of optimizer step t (1-based) of T, one function that
the compiled epoch and the NumPy reference both call.

The names and codes (SCHEDULES) are in kernels/interface.py; an unknown code raises.
    warm-up (constant, cosine, step): lr * t / W for t <= W (W = warm-up steps)
    constant: lr
    cosine:   lr * (1 + cos(pi * (t - W) / (T - W))) / 2
    step:     lr, times 0.1 after 50 % and again after 75 % of T
    onecycle: PyTorch's OneCycleLR shape: from lr / 25 linearly up to lr over the first
              30 % of T, then a cosine down to lr / 1e4 (it has its own warm-up)
"""
import numpy as np

from . import kernel
from .interface import CONSTANT, COSINE, ONECYCLE, SCHEDULES, STEP  # noqa: F401 (re-exported)
ONECYCLE_RISE = 0.3
ONECYCLE_START = 1.0 / 25.0
ONECYCLE_END = 1e-4


@kernel()
def scheduled_lr(lr, code, t, total, warmup):
    """The learning rate of step t of total; warmup: warm-up steps (0: none)."""
    if code == ONECYCLE:
        rise = max(ONECYCLE_RISE * total, 1.0)
        if t <= rise:
            return lr * (ONECYCLE_START + (1.0 - ONECYCLE_START) * t / rise)
        fall = max(total - rise, 1.0)
        progress = min((t - rise) / fall, 1.0)
        return lr * (ONECYCLE_END + (1.0 - ONECYCLE_END) * 0.5 * (1.0 + np.cos(np.pi * progress)))
    if code != CONSTANT and code != COSINE and code != STEP:
        raise ValueError("unknown lr_schedule code")
    if t <= warmup:
        return lr * t / warmup
    if code == COSINE:
        progress = min((t - warmup) / max(total - warmup, 1.0), 1.0)
        return lr * 0.5 * (1.0 + np.cos(np.pi * progress))
    if code == STEP:
        if t > 0.75 * total:
            return lr * 0.01
        if t > 0.5 * total:
            return lr * 0.1
    return lr  # CONSTANT, and STEP before its first drop
