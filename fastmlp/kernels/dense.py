"""One dense layer forward and backward, bias and activation fused. Arguments: outputs first."""
import numpy as np
from . import kernel

from .activations import bias_activate, scale_by_derivative
from .gemm import matmul


@kernel()
def dense_forward(out, a_in, weights, bias, act_code):
    """out (B, n_out) = act(a_in (B, n_in) @ weights (n_in, n_out) + bias (n_out,))."""
    matmul(out, a_in, weights)
    bias_activate(out, bias, act_code)


@kernel()
def dense_backward(dweights, dbias, dz_in, dz, a_in, weights, in_act_code, want_dz_in,
                   a_in_pre, in_scales, dropped):
    """Given dz = dLoss/d(pre-activation) (B, n_out) of this layer:
    dweights (n_in, n_out) = a_in^T dz;  dbias (n_out,) = column sums of dz;
    if want_dz_in: dz_in (B, n_in) = (dz @ weights^T) * act'(a_in), the previous layer's dz.
    dropped: the input went through dropout, a_in = a_in_pre * in_scales; then
    dz_in = (dz @ weights^T) * in_scales * act'(a_in_pre)."""
    matmul(dweights, a_in.T, dz)
    rows, cols = dz.shape
    for j in range(cols):
        dbias[j] = 0.0
    for i in range(rows):
        for j in range(cols):
            dbias[j] += dz[i, j]
    if want_dz_in:
        np.dot(dz, weights.T, dz_in)
        if dropped:
            for i in range(rows):
                for j in range(dz_in.shape[1]):
                    dz_in[i, j] *= in_scales[i, j]
            scale_by_derivative(dz_in, a_in_pre, in_act_code)
        else:
            scale_by_derivative(dz_in, a_in, in_act_code)
