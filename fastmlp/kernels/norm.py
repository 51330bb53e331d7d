"""The normalisations of a hidden dense layer, between its affine map and its activation.

LayerNorm (--norm layer; Ba, Kiros and Hinton 2016; PyTorch's nn.LayerNorm over the last
axis, eps 1e-5):

    z = a_in W + b,   x = (z - mean(z)) / sqrt(var(z) + eps)   per row, over the n units
    y = gamma * x + beta,   a = act(y)

gamma and beta (n,) follow the layer's bias in the parameter buffer (model.Layout). Given
dy = dLoss/dy (B, n), the backward pass is

    dgamma = sum over rows of dy * x,   dbeta = sum over rows of dy,   g = dy * gamma
    dz = (g - mean(g) - x * mean(g * x)) / sqrt(var(z) + eps)      means over the row's units

(the two means are what each z_j's share in the row's mean and variance takes back).

BatchNorm (--norm batch; Ioffe and Szegedy 2015; PyTorch's nn.BatchNorm1d, eps 1e-5,
momentum 0.1): the same with the statistics of each unit over the batch's B rows,

    x = (z - mean_rows(z)) / sqrt(var_rows(z) + eps),   y = gamma * x + beta
    dz = gamma / sqrt(var + eps) * (dy - mean_rows(dy) - x * mean_rows(dy * x))

and dgamma, dbeta as above. Training also moves each unit's running mean and variance (the
unbiased batch variance) a tenth of the way to the batch's; evaluation normalises with
them, so a row's output does not depend on the other rows. The statistics are summed in
float64 whatever the parameters' dtype, over the rows in their order.
"""
import numpy as np

from . import kernel
from .interface import BATCH_NORM_MOMENTUM, NORM_EPS


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
        inv = 1.0 / np.sqrt(spread / cols + NORM_EPS)
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


@kernel()
def batch_norm_forward(z, bias, gamma, running_mean, running_var, normed, batch_stats):
    """z (B, n) <- gamma * x, x = z + bias normalised per unit, in place (the activation then
    adds beta). Training (normed has rows): x from the batch's statistics, normed (B, n) <-
    x and batch_stats (3, n) <- 1 / sqrt(var + eps), the batch's mean and its unbiased
    variance (what batch_norm_track moves the running statistics with). Evaluation (normed
    has no rows): x from the running statistics. Nothing here writes the running statistics,
    so the parameters may be read-only."""
    rows, cols = z.shape
    training = normed.shape[0] > 0
    centre = np.empty(cols, dtype=z.dtype)
    scale = np.empty(cols, dtype=z.dtype)
    if training:
        total = np.zeros(cols)
        square = np.zeros(cols)
        for i in range(rows):
            row = z[i]
            for j in range(cols):
                row[j] += bias[j]
                total[j] += row[j]
        for j in range(cols):
            centre[j] = total[j] / rows
        for i in range(rows):
            row = z[i]
            for j in range(cols):
                d = row[j] - centre[j]
                square[j] += d * d
        unbiased = rows / (rows - 1.0) if rows > 1 else 1.0
        inv_std, batch_mean, batch_var = batch_stats[0], batch_stats[1], batch_stats[2]
        for j in range(cols):
            variance = square[j] / rows
            inv_std[j] = 1.0 / np.sqrt(variance + NORM_EPS)
            scale[j] = inv_std[j]
            batch_mean[j] = total[j] / rows
            batch_var[j] = variance * unbiased
        for i in range(rows):
            row, x_row = z[i], normed[i]
            for j in range(cols):
                x_row[j] = (row[j] - centre[j]) * scale[j]
                row[j] = gamma[j] * x_row[j]
    else:
        for j in range(cols):
            centre[j] = running_mean[j] - bias[j]  # z + bias - mean, with the bias folded in
            scale[j] = 1.0 / np.sqrt(running_var[j] + NORM_EPS)
        for i in range(rows):
            row = z[i]
            for j in range(cols):
                row[j] = gamma[j] * ((row[j] - centre[j]) * scale[j])


@kernel()
def batch_norm_track(running_mean, running_var, batch_stats):
    """Move the running statistics (n,) a tenth of the way (the momentum) towards the
    batch's mean and unbiased variance, batch_stats[1] and [2] (batch_norm_forward)."""
    m = BATCH_NORM_MOMENTUM
    for j in range(running_mean.shape[0]):
        running_mean[j] = (1.0 - m) * running_mean[j] + m * batch_stats[1, j]
        running_var[j] = (1.0 - m) * running_var[j] + m * batch_stats[2, j]


@kernel()
def batch_norm_backward(dz, normed, inv_std, gamma, dgamma, dbeta):
    """dz (B, n): dLoss/dy in, dLoss/dz out, in place; dgamma, dbeta (n,) <- their gradients
    over the batch (overwritten). normed, inv_std: what batch_norm_forward kept."""
    rows, cols = dz.shape
    sum_dy = np.zeros(cols)
    sum_dyx = np.zeros(cols)
    for i in range(rows):
        g_row, x_row = dz[i], normed[i]
        for j in range(cols):
            sum_dy[j] += g_row[j]
            sum_dyx[j] += g_row[j] * x_row[j]
    mean_dy = np.empty(cols, dtype=dz.dtype)
    mean_dyx = np.empty(cols, dtype=dz.dtype)
    factor = np.empty(cols, dtype=dz.dtype)
    for j in range(cols):
        dgamma[j] = sum_dyx[j]
        dbeta[j] = sum_dy[j]
        mean_dy[j] = sum_dy[j] / rows
        mean_dyx[j] = sum_dyx[j] / rows
        factor[j] = gamma[j] * inv_std[j]
    for i in range(rows):
        g_row, x_row = dz[i], normed[i]
        for j in range(cols):
            g_row[j] = factor[j] * (g_row[j] - mean_dy[j] - x_row[j] * mean_dyx[j])
