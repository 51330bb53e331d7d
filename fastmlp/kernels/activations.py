"""Activations, fused into the dense kernels. Codes follow config.ACTIVATIONS:
0 identity, 1 sigmoid, 2 tanh, 3 ReLU. Derivatives use the activation's OUTPUT a."""
import numpy as np
from . import kernel

IDENTITY, SIGMOID, TANH, RELU = 0, 1, 2, 3


@kernel()
def bias_activate(z, bias, code):
    """z (B, n) <- act(z + bias), in place."""
    rows, cols = z.shape
    if code == IDENTITY:
        for i in range(rows):
            for j in range(cols):
                z[i, j] = z[i, j] + bias[j]
    elif code == SIGMOID:
        for i in range(rows):
            for j in range(cols):
                z[i, j] = 1.0 / (1.0 + np.exp(-(z[i, j] + bias[j])))
    elif code == TANH:
        for i in range(rows):
            for j in range(cols):
                z[i, j] = np.tanh(z[i, j] + bias[j])
    else:
        for i in range(rows):
            for j in range(cols):
                v = z[i, j] + bias[j]
                z[i, j] = v if v > 0 else 0.0


@kernel()
def scale_by_derivative(grad, a, code):
    """grad (B, n) *= act'(.) expressed through the output a (B, n), in place."""
    rows, cols = grad.shape
    if code == IDENTITY:
        return
    for i in range(rows):
        for j in range(cols):
            if code == SIGMOID:
                grad[i, j] *= a[i, j] * (1.0 - a[i, j])
            elif code == TANH:
                grad[i, j] *= 1.0 - a[i, j] * a[i, j]
            elif a[i, j] <= 0:
                grad[i, j] = 0.0
