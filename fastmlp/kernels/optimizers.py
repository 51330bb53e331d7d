"""One fused update per optimizer over the whole flat parameter buffer. Codes follow
config.OPTIMIZERS: 0 sgd, 1 momentum, 2 nag, 3 rmsprop, 4 adam, 5 nadam.

g = grad + weight_decay * param on weight segments (not biases); t counts steps from 1.
state1/state2 hold u, v, s or (m1, m2), by optimizer. The math is in design.md and
fastmlp/reference.py (Optimizer.update).
"""
import numpy as np
from numba import njit

SGD, MOMENTUM, NAG, RMSPROP, ADAM, NADAM = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def optimizer_update(params, state1, state2, grads, segments, t, opt_code,
                     lr, momentum, beta, beta1, beta2, eps, weight_decay):
    """params, state1, state2 (P,) updated in place from grads (P,); segments rows are
    (start, end, is_weight) covering the buffer."""
    bias_fix1 = 1.0 - beta1 ** t
    bias_fix2 = 1.0 - beta2 ** t
    for s in range(segments.shape[0]):
        start, end = segments[s, 0], segments[s, 1]
        decay = weight_decay if segments[s, 2] == 1 else 0.0
        if opt_code == SGD:
            for i in range(start, end):
                g = grads[i] + decay * params[i]
                params[i] -= lr * g
        elif opt_code == MOMENTUM:
            for i in range(start, end):
                g = grads[i] + decay * params[i]
                state1[i] = momentum * state1[i] + lr * g
                params[i] -= state1[i]
        elif opt_code == NAG:
            for i in range(start, end):
                g = grads[i] + decay * params[i]
                state1[i] = momentum * state1[i] + g
                params[i] -= lr * (g + momentum * state1[i])
        elif opt_code == RMSPROP:
            for i in range(start, end):
                g = grads[i] + decay * params[i]
                state1[i] = beta * state1[i] + (1.0 - beta) * g * g
                params[i] -= lr * g / (np.sqrt(state1[i]) + eps)
        else:
            nesterov = opt_code == NADAM
            for i in range(start, end):
                g = grads[i] + decay * params[i]
                state1[i] = beta1 * state1[i] + (1.0 - beta1) * g
                state2[i] = beta2 * state2[i] + (1.0 - beta2) * g * g
                m_hat = state1[i] / bias_fix1
                if nesterov:
                    m_hat = beta1 * m_hat + (1.0 - beta1) * g / bias_fix1
                v_hat = state2[i] / bias_fix2
                params[i] -= lr * m_hat / (np.sqrt(v_hat) + eps)
