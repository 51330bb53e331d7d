"""One fused update per optimizer over the whole flat parameter buffer.

The names and codes (OPTIMIZERS) and the entries of the float64 array `hyper` (HP_*) are
in kernels/interface.py. To add an optimizer: a name there, a branch below, a branch in the
twin `fastmlp.reference` (docs/ARCHITECTURE.md). An unknown code raises.

g = grad + weight_decay * param on weight segments (not biases), except for adamw, whose
decay is decoupled (applied to the weights directly); t counts steps from 1; lr is the
scheduled learning rate of step t (kernels/schedules.py).
state1/state2 hold u, v, s or (m1, m2), by optimizer. The math is in fastmlp/reference.py
(Optimizer.update), written to be read.

Speed: every constant is folded before the loops and cast to the buffer's dtype, so a float32
buffer is updated in float32 arithmetic and each loop is a straight SIMD-friendly pass. Each
loop reads a state element once and writes it once, keeping the new value in a local: reading
s1[i] back after storing it (where LLVM cannot rule out that s1 and p overlap) kept Adam's loop
from vectorising, 48 us against 18 us over the seed net's 59,210 parameters on a Zen 4.
"""
import numpy as np
from . import kernel
from .fastmath import scalar_like
from .interface import (ADAM, ADAMW, HP_BETA, HP_BETA1, HP_BETA2, HP_EPSILON, HP_MOMENTUM,
                        HP_WEIGHT_DECAY, MOMENTUM, NADAM, NAG, OPTIMIZERS, RMSPROP,  # noqa: F401
                        SGD)


@kernel()
def optimizer_update(params, state1, state2, grads, segments, t, opt_code, hyper, lr, lo, hi):
    """params, state1, state2 (P,) updated in place from grads (P,) over the index range
    [lo, hi) (the whole buffer: 0, P); segments rows are (start, end, is_weight) covering
    the buffer; hyper is the HYPERPARAMETERS array; lr the learning rate of step t."""
    eps = hyper[HP_EPSILON]
    momentum, beta = hyper[HP_MOMENTUM], hyper[HP_BETA]
    beta1, beta2 = hyper[HP_BETA1], hyper[HP_BETA2]
    weight_decay = hyper[HP_WEIGHT_DECAY]
    one = scalar_like(1.0, params)
    lr_, eps_ = scalar_like(lr, params), scalar_like(eps, params)
    m_ = scalar_like(momentum, params)
    b_ = scalar_like(beta, params)
    b1, b2 = scalar_like(beta1, params), scalar_like(beta2, params)
    # adam/nadam with the bias corrections folded in:
    #   W -= lr * m1/(1-b1^t) / (sqrt(m2/(1-b2^t)) + eps)
    #      = step_size * m1 / (sqrt(m2) + eps_hat)
    # with step_size = lr * sqrt(1-b2^t) / (1-b1^t) and eps_hat = eps * sqrt(1-b2^t)
    fix1, fix2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    step_size = scalar_like(lr * np.sqrt(fix2) / fix1, params)
    eps_hat = scalar_like(eps * np.sqrt(fix2), params)
    # nadam's b1*m1_hat + (1-b1)*g/(1-b1^t) is (b1*m1 + (1-b1)*g) / (1-b1^t): same step_size
    for s in range(segments.shape[0]):
        start, end = max(segments[s, 0], lo), min(segments[s, 1], hi)
        if start >= end:
            continue
        decay = scalar_like(weight_decay if segments[s, 2] == 1 else 0.0, params)
        p = params[start:end]
        g_raw = grads[start:end]
        s1 = state1[start:end]
        s2 = state2[start:end]
        if opt_code == SGD:
            for i in range(p.size):
                p[i] -= lr_ * (g_raw[i] + decay * p[i])
        elif opt_code == MOMENTUM:
            for i in range(p.size):
                u = m_ * s1[i] + lr_ * (g_raw[i] + decay * p[i])
                s1[i] = u
                p[i] -= u
        elif opt_code == NAG:
            for i in range(p.size):
                g = g_raw[i] + decay * p[i]
                u = m_ * s1[i] + g
                s1[i] = u
                p[i] -= lr_ * (g + m_ * u)
        elif opt_code == RMSPROP:
            for i in range(p.size):
                g = g_raw[i] + decay * p[i]
                v = b_ * s1[i] + (one - b_) * g * g
                s1[i] = v
                p[i] -= lr_ * g / (np.sqrt(v) + eps_)
        elif opt_code == ADAM:
            for i in range(p.size):
                g = g_raw[i] + decay * p[i]
                m1 = b1 * s1[i] + (one - b1) * g
                m2 = b2 * s2[i] + (one - b2) * g * g
                s1[i], s2[i] = m1, m2
                p[i] -= step_size * m1 / (np.sqrt(m2) + eps_hat)
        elif opt_code == ADAMW:  # Adam on the data gradient; decay applied to the weights
            for i in range(p.size):
                g = g_raw[i]
                m1 = b1 * s1[i] + (one - b1) * g
                m2 = b2 * s2[i] + (one - b2) * g * g
                s1[i], s2[i] = m1, m2
                p[i] -= step_size * m1 / (np.sqrt(m2) + eps_hat) + lr_ * decay * p[i]
        elif opt_code == NADAM:
            for i in range(p.size):
                g = g_raw[i] + decay * p[i]
                m1 = b1 * s1[i] + (one - b1) * g
                m2 = b2 * s2[i] + (one - b2) * g * g
                s1[i], s2[i] = m1, m2
                p[i] -= step_size * (b1 * m1 + (one - b1) * g) / (np.sqrt(m2) + eps_hat)
        else:
            raise ValueError("unknown optimizer code")
