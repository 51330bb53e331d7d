"""Activations, fused into the dense kernels. Derivatives use the activation's OUTPUT a.

The names and codes are in kernels/interface.py (ACTIVATIONS: the `-a/--activation`
choices); every branch below names its code, and an unknown code raises.
"""
from . import kernel
from .fastmath import fast_exp, fast_tanh, scalar_like
from .interface import ACTIVATIONS, IDENTITY, RELU, SIGMOID, TANH  # noqa: F401 (re-exported)


@kernel()
def bias_activate(z, bias, code):
    """z (B, n) <- act(z + bias), in place. Each branch is a plain loop LLVM vectorises."""
    rows, cols = z.shape
    one, zero = scalar_like(1.0, z), scalar_like(0.0, z)
    for i in range(rows):
        row = z[i]
        if code == IDENTITY:
            for j in range(cols):
                row[j] = row[j] + bias[j]
        elif code == SIGMOID:
            for j in range(cols):
                row[j] = one / (one + fast_exp(-(row[j] + bias[j])))
        elif code == TANH:
            for j in range(cols):
                row[j] = fast_tanh(row[j] + bias[j])
        elif code == RELU:
            for j in range(cols):
                v = row[j] + bias[j]
                row[j] = v if v > zero else zero
        else:
            raise ValueError("unknown activation code")


@kernel()
def scale_by_derivative(grad, a, code):
    """grad (B, n) *= act'(.) expressed through the output a (B, n), in place."""
    rows, cols = grad.shape
    if code == IDENTITY:
        return
    one, zero = scalar_like(1.0, a), scalar_like(0.0, a)
    for i in range(rows):
        g_row, a_row = grad[i], a[i]
        if code == SIGMOID:
            for j in range(cols):
                g_row[j] *= a_row[j] * (one - a_row[j])
        elif code == TANH:
            for j in range(cols):
                g_row[j] *= one - a_row[j] * a_row[j]
        elif code == RELU:
            for j in range(cols):
                g_row[j] = g_row[j] if a_row[j] > zero else zero
        else:
            raise ValueError("unknown activation code")
