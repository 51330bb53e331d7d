"""exp, tanh and the normal CDF that LLVM can vectorise, for float32 buffers.

libm's expf/tanhf are scalar calls (13 and 30 ns a value here); the float32 versions below are
straight-line arithmetic that compiles to SIMD code (about 2 ns a value). float64 keeps
np.exp/np.tanh/math.erfc, so the float64 parity tests against the NumPy reference stay exact.

exp32: Cephes expf. x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for accuracy),
e^r by a degree-6 polynomial, 2^n built directly from its IEEE bits. Relative error about
1 ulp for -87 < x < 88; inputs are clamped to where 2^n stays a normal float.
"""
import math
import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import kernel


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


def _exp32(x):
    x = min(max(x, np.float32(-87.3)), np.float32(88.3))
    n = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


@kernel()
def scalar_like(value, array):
    """value as a scalar of array's dtype (keeps float32 loops in float32 arithmetic)."""
    holder = np.empty(1, dtype=array.dtype)
    holder[0] = value
    return holder[0]


def _is_float32(x):
    return isinstance(x, types.Float) and x.bitwidth == 32


def fast_exp(x):
    """e^x (plain NumPy when called outside Numba)."""
    return np.exp(x)


def fast_tanh(x):
    """tanh(x) (plain NumPy when called outside Numba)."""
    return np.tanh(x)


@overload(fast_exp, inline="always")
def _fast_exp_overload(x):
    if _is_float32(x):
        return _exp32
    return lambda x: np.exp(x)


@overload(fast_tanh, inline="always")
def _fast_tanh_overload(x):
    if _is_float32(x):
        # tanh(x) = 1 - 2 / (e^{2x} + 1): exact at the tails, ~1e-7 absolute near 0
        return lambda x: np.float32(1.0) - np.float32(2.0) / (fast_exp(np.float32(2.0) * x)
                                                              + np.float32(1.0))
    return lambda x: np.tanh(x)


def _normal_cdf32(z):
    """Phi(z) for float32 z, as erfc(-z / sqrt 2) / 2. erfc(u), u = |z| / sqrt 2, is
    Numerical Recipes' erfcc (a Chebyshev fit of erfc(u) e^{u^2} in t = 1 / (1 + u / 2)),
    relative error below 1.2e-7 for every u >= 0: Phi(z) for z < 0 is that half-tail, so it
    keeps its digits; for z >= 0 it is 1 minus it."""
    u = abs(z) * np.float32(0.7071067811865476)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.5) * u)
    p = np.float32(0.17087277)
    p = p * t + np.float32(-0.82215223)
    p = p * t + np.float32(1.48851587)
    p = p * t + np.float32(-1.13520398)
    p = p * t + np.float32(0.27886807)
    p = p * t + np.float32(-0.18628806)
    p = p * t + np.float32(0.09678418)
    p = p * t + np.float32(0.37409196)
    p = p * t + np.float32(1.00002368)
    p = p * t + np.float32(-1.26551223)
    half_tail = np.float32(0.5) * t * fast_exp(p - u * u)
    return half_tail if z < np.float32(0.0) else np.float32(1.0) - half_tail


def normal_cdf(z):
    """Phi(z) = (1 + erf(z / sqrt 2)) / 2, the standard normal CDF that GELU multiplies by,
    computed as erfc(-z / sqrt 2) / 2 (the same number, without cancellation for z < 0).
    (SciPy's erfc when called outside Numba.)"""
    from scipy.special import erfc

    return 0.5 * erfc(-z * 0.7071067811865476)


@overload(normal_cdf, inline="always")
def _normal_cdf_overload(z):
    if _is_float32(z):
        return _normal_cdf32
    return lambda z: 0.5 * math.erfc(-z * 0.7071067811865476)


# ----------------------------------------------------------------------------- denormals
# Late in training, values that decay towards zero (Adam's first moment of weights that get
# no gradient, the weights of always-black pixels under weight decay) become denormal
# floats, and every arithmetic operation on one costs about a hundred cycles on x86: the
# seed configuration's epoch went from 0.5 s to 7.5 s over six epochs. The kernels set the
# CPU's flush-to-zero and denormals-are-zero bits (MXCSR, x86's SSE/AVX control register)
# while they run, on every thread, and restore the caller's bits when they return, as deep
# learning frameworks do on CPUs.
FLUSH_TO_ZERO_BITS = 0x8040  # FTZ (bit 15) | DAZ (bit 6)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        stmxcsr = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]),
            "llvm.x86.sse.stmxcsr")
        builder.call(stmxcsr, [builder.bitcast(slot, ir.IntType(8).as_pointer())])
        return builder.load(slot)
    return types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        ldmxcsr = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]),
            "llvm.x86.sse.ldmxcsr")
        builder.call(ldmxcsr, [builder.bitcast(slot, ir.IntType(8).as_pointer())])
        return context.get_dummy_value()
    return types.void(types.uint32), codegen


def flush_denormals():
    """Turn flush-to-zero on for this thread; returns what restore_denormals needs."""
    return 0


def restore_denormals(saved):
    """Put back this thread's floating-point mode saved by flush_denormals."""


@overload(flush_denormals, inline="always")
def _flush_denormals_overload():
    if not _X86:
        return lambda: np.uint32(0)

    def flush():
        saved = _read_mxcsr()
        _write_mxcsr(saved | np.uint32(FLUSH_TO_ZERO_BITS))
        return saved
    return flush


@overload(restore_denormals, inline="always")
def _restore_denormals_overload(saved):
    if not _X86:
        return lambda saved: None
    return lambda saved: _write_mxcsr(saved)
