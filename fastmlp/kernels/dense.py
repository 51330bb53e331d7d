"""One dense layer forward and backward, bias and activation fused. Arguments: outputs first.
slope: LeakyReLU's (the other activations ignore it)."""
import numpy as np
from . import kernel

from .activations import bias_activate, bias_activate_keeping_z, scale_by_derivative
from .gemm import matmul
from .interface import BATCH_NORM, LAYER_NORM
from .norm import batch_norm_forward, layer_norm_forward


@kernel()
def dense_forward(out, a_in, weights, bias, act_code, slope):
    """out (B, n_out) = act(a_in (B, n_in) @ weights (n_in, n_out) + bias (n_out,))."""
    matmul(out, a_in, weights)
    bias_activate(out, bias, act_code, slope)


@kernel()
def dense_forward_keeping_z(out, z, a_in, weights, bias, act_code, slope):
    """dense_forward, and z (B, n_out) = a_in @ weights + bias kept beside out: for the
    activations whose backward pass reads z (activations.needs_pre_activations)."""
    matmul(z, a_in, weights)
    bias_activate_keeping_z(out, z, bias, act_code, slope)


@kernel()
def dense_forward_normed(out, z, a_in, weights, vectors, norm, normed, stats, act_code,
                         slope, keep_z):
    """dense_forward with a normalisation before the activation (--norm, kernels/norm.py):
    out = act(gamma * N(a_in @ weights + bias) + beta), N LayerNorm or BatchNorm (norm: its
    code). vectors (k, n_out): the layer's bias, gamma, beta (and BatchNorm's running mean
    and variance, only read). With keep_z the activation's input is kept in z (B, n_out),
    else z is out itself; normed and stats: what the backward pass reads (epoch._norm_kept;
    no rows: evaluation)."""
    matmul(z, a_in, weights)
    if norm == LAYER_NORM:
        layer_norm_forward(z, vectors[0], vectors[1], normed, stats.reshape(stats.size))  # (1, B)
    elif norm == BATCH_NORM:
        batch_norm_forward(z, vectors[0], vectors[1], vectors[3], vectors[4], normed, stats)
    else:
        raise ValueError("unknown normalisation code")
    beta = vectors[2]
    if keep_z:  # beta is the activation's bias
        bias_activate_keeping_z(out, z, beta, act_code, slope)
    else:
        bias_activate(out, beta, act_code, slope)


@kernel()
def dense_backward(dweights, dbias, dz_in, dz, a_in, weights, in_act_code, slope, want_dz_in,
                   in_kept, in_scales, dropped, skip_grad, carry):
    """Given dz = dLoss/d(pre-activation) (B, n_out) of this layer:
    dweights (n_in, n_out) = a_in^T dz;  dbias (n_out,) = column sums of dz;
    if want_dz_in: dz_in (B, n_in) = (dz @ weights^T) * act'(.), the previous layer's dz,
    act' read from in_kept: what the input layer's activation's derivative reads
    (activations.scale_by_derivative), its output or its pre-activation. dropped: the input
    went through dropout, a_in = act(.) * in_scales; then dz_in is also times in_scales.
    Skip connections (--residual; arrays of no rows where there is none): skip_grad (B, n_in)
    is dLoss/d(output) that reached this layer's output, which adds its input, so it reaches
    the input too: added to dz @ weights^T. carry (B, n_in) receives that sum, dLoss/d(input),
    before act' when the input layer's output adds its own input (carry may be skip_grad's
    memory: it is read first)."""
    matmul(dweights, a_in.T, dz)
    rows, cols = dz.shape
    for j in range(cols):
        dbias[j] = 0.0
    for i in range(rows):
        for j in range(cols):
            dbias[j] += dz[i, j]
    if want_dz_in:
        np.dot(dz, weights.T, dz_in)
        if skip_grad.shape[0] > 0:
            for i in range(rows):
                for j in range(dz_in.shape[1]):
                    dz_in[i, j] += skip_grad[i, j]
        if carry.shape[0] > 0:
            carry[:] = dz_in
        if dropped:
            for i in range(rows):
                for j in range(dz_in.shape[1]):
                    dz_in[i, j] *= in_scales[i, j]
        scale_by_derivative(dz_in, in_kept, in_act_code, slope)
