"""Activations, fused into the dense kernels. Derivatives use the activation's OUTPUT a.

ACTIVATIONS is the one table of activation names; a name's code (what the kernels branch
on) is its index. The `-a/--activation` choices come from here.
"""
from . import kernel
from .fastmath import fast_exp, fast_tanh, scalar_like

ACTIVATIONS = ("identity", "sigmoid", "tanh", "ReLU")
IDENTITY, SIGMOID, TANH, RELU = range(len(ACTIVATIONS))


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
        else:
            for j in range(cols):
                v = row[j] + bias[j]
                row[j] = v if v > zero else zero


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
        else:
            for j in range(cols):
                g_row[j] = g_row[j] if a_row[j] > zero else zero
