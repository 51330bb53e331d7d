"""Activations, fused into the dense kernels.

The names and codes are in kernels/interface.py (ACTIVATIONS: the `-a/--activation`
choices); every branch below names its code, and an unknown code raises.

The backward pass reads, per activation, the array that costs least to keep: the OUTPUT
a = act(z) for identity, sigmoid, tanh, ReLU and LeakyReLU (their derivatives are functions
of it), the pre-activation z for GELU and SiLU (not one-to-one, so their output does not
tell z). needs_pre_activations(code) says which; the epoch keeps z only for those.

    GELU(z)       = z Phi(z)                 GELU'(z)      = Phi(z) + z phi(z)
    SiLU(z)       = z s,  s = sigmoid(z)     SiLU'(z)      = s (1 + z (1 - s))
    LeakyReLU(z)  = z if z > 0 else slope z  LeakyReLU'    = 1 if a > 0 else slope
Phi, phi: the standard normal CDF and density (GELU in its exact erf form, PyTorch's
default); slope in [0, 1) (so a > 0 exactly where z > 0).
"""
from . import kernel
from .fastmath import fast_exp, fast_tanh, normal_cdf, scalar_like
from .interface import (ACTIVATIONS, GELU, IDENTITY, LEAKY_RELU,  # noqa: F401 (re-exported)
                        PRE_ACTIVATIONS_NEEDED, RELU, SIGMOID, SILU, TANH)

INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi): the normal density's factor


@kernel()
def needs_pre_activations(code):
    """True for the activations whose backward pass reads z rather than a
    (interface.NEEDS_PRE_ACTIVATIONS: GELU, SiLU). code: a checked one (check_codes)."""
    return PRE_ACTIVATIONS_NEEDED[code]


@kernel()
def bias_activate(z, bias, code, slope):
    """z (B, n) <- act(z + bias), in place. Each branch is a plain loop LLVM vectorises.
    slope: LeakyReLU's for z < 0 (the others ignore it)."""
    rows, cols = z.shape
    one, zero = scalar_like(1.0, z), scalar_like(0.0, z)
    # (scalar_like allocates: only the activation that reads a constant makes it)
    leak = scalar_like(slope, z) if code == LEAKY_RELU else zero
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
        elif code == GELU:
            for j in range(cols):
                v = row[j] + bias[j]
                row[j] = v * normal_cdf(v)
        elif code == SILU:
            for j in range(cols):
                v = row[j] + bias[j]
                row[j] = v / (one + fast_exp(-v))
        elif code == LEAKY_RELU:
            for j in range(cols):
                v = row[j] + bias[j]
                row[j] = v if v > zero else leak * v
        else:
            raise ValueError("unknown activation code")


@kernel()
def bias_activate_keeping_z(out, z, bias, code, slope):
    """z (B, n) <- z + bias, kept for the backward pass, and out (B, n) <- act(z): the
    training pass of the activations that need their pre-activations (GELU, SiLU; the
    others keep nothing and go through bias_activate)."""
    rows, cols = z.shape
    one = scalar_like(1.0, z)
    for i in range(rows):
        z_row, out_row = z[i], out[i]
        for j in range(cols):
            z_row[j] = z_row[j] + bias[j]
        if code == GELU:
            for j in range(cols):
                out_row[j] = z_row[j] * normal_cdf(z_row[j])
        elif code == SILU:
            for j in range(cols):
                out_row[j] = z_row[j] / (one + fast_exp(-z_row[j]))
        else:
            raise ValueError("unknown activation code")


@kernel()
def scale_by_derivative(grad, kept, code, slope):
    """grad (B, n) *= act'(.), in place, read from kept (B, n): the activation's output a,
    or its pre-activation z where needs_pre_activations(code) (GELU, SiLU)."""
    rows, cols = grad.shape
    if code == IDENTITY:
        return
    one, zero = scalar_like(1.0, kept), scalar_like(0.0, kept)
    leak = scalar_like(slope, kept) if code == LEAKY_RELU else zero
    density = scalar_like(INV_SQRT_2PI, kept) if code == GELU else zero
    half = scalar_like(0.5, kept) if code == GELU else zero
    for i in range(rows):
        g_row, k_row = grad[i], kept[i]
        if code == SIGMOID:  # k = a
            for j in range(cols):
                g_row[j] *= k_row[j] * (one - k_row[j])
        elif code == TANH:  # k = a
            for j in range(cols):
                g_row[j] *= one - k_row[j] * k_row[j]
        elif code == RELU:  # k = a
            for j in range(cols):
                g_row[j] = g_row[j] if k_row[j] > zero else zero
        elif code == GELU:  # k = z: Phi(z) + z phi(z)
            for j in range(cols):
                v = k_row[j]
                g_row[j] *= normal_cdf(v) + v * density * fast_exp(-half * v * v)
        elif code == SILU:  # k = z: s (1 + z (1 - s))
            for j in range(cols):
                v = k_row[j]
                e = fast_exp(-v)
                s = one / (one + e)
                # 1 - s = e s: computed so for z > 0, where 1 - s would cancel
                g_row[j] *= s * (one + v * (e * s if v > zero else one - s))
        elif code == LEAKY_RELU:  # k = a
            for j in range(cols):
                g_row[j] = g_row[j] if k_row[j] > zero else leak * g_row[j]
        else:
            raise ValueError("unknown activation code")
