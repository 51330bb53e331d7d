"""LayerNorm (--norm layer) of a hidden dense layer, between its affine map and its activation
(Ba, Kiros and Hinton 2016; PyTorch's nn.LayerNorm over the last axis, eps 1e-5):

    z = a_in W + b,   x = (z - mean(z)) / sqrt(var(z) + eps)   per row, over the n units
    y = gamma * x + beta,   a = act(y)

gamma and beta (n,) follow the layer's bias in the parameter buffer (model.Layout). Given
dy = dLoss/dy (B, n), the backward pass is

    dgamma = sum over rows of dy * x,   dbeta = sum over rows of dy,   g = dy * gamma
    dz = (g - mean(g) - x * mean(g * x)) / sqrt(var(z) + eps)      means over the row's units

(the two means are what each z_j's share in the row's mean and variance takes back). The
row's statistics are summed in float64 whatever the parameters' dtype.
"""
import numpy as np

from . import kernel
from .interface import LAYER_NORM_EPS


@kernel()
def layer_norm_forward(z, bias, gamma, normed, inv_std):
    """z (B, n) <- gamma * x, x the row-normalised z + bias, in place (the activation then
    adds beta: activations.bias_activate). normed (B, n) <- x and inv_std (B,) <- 1 /
    sqrt(var + eps), what layer_norm_backward reads, unless normed has no rows (inference)."""
    rows, cols = z.shape
    keep = normed.shape[0] > 0
    row_stats = np.empty(2, dtype=z.dtype)  # the row's mean and 1 / std in z's dtype
    for i in range(rows):
        row = z[i]
        total = 0.0
        for j in range(cols):
            row[j] += bias[j]
            total += row[j]
        mean = total / cols
        spread = 0.0
        for j in range(cols):
            d = row[j] - mean
            spread += d * d
        inv = 1.0 / np.sqrt(spread / cols + LAYER_NORM_EPS)
        row_stats[0], row_stats[1] = mean, inv
        m, s = row_stats[0], row_stats[1]
        if keep:
            inv_std[i] = inv
            x_row = normed[i]
            for j in range(cols):
                x_row[j] = (row[j] - m) * s
                row[j] = gamma[j] * x_row[j]
        else:
            for j in range(cols):
                row[j] = gamma[j] * ((row[j] - m) * s)


@kernel()
def layer_norm_backward(dz, normed, inv_std, gamma, dgamma, dbeta):
    """dz (B, n): dLoss/dy in, dLoss/dz out, in place; dgamma, dbeta (n,) <- their gradients
    over these rows (overwritten). normed, inv_std: what layer_norm_forward kept."""
    rows, cols = dz.shape
    for j in range(cols):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    row_stats = np.empty(3, dtype=dz.dtype)
    for i in range(rows):
        g_row, x_row = dz[i], normed[i]
        mean_g = 0.0
        mean_gx = 0.0
        for j in range(cols):
            dgamma[j] += g_row[j] * x_row[j]
            dbeta[j] += g_row[j]
            g = g_row[j] * gamma[j]
            mean_g += g
            mean_gx += g * x_row[j]
        row_stats[0], row_stats[1], row_stats[2] = mean_g / cols, mean_gx / cols, inv_std[i]
        mg, mgx, s = row_stats[0], row_stats[1], row_stats[2]
        for j in range(cols):
            g_row[j] = (g_row[j] * gamma[j] - mg - x_row[j] * mgx) * s
