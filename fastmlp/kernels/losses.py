"""The losses, and the output layer's function at inference. The names and codes are in
kernels/interface.py (LOSSES, OUTPUTS); every branch names its code, and an unknown code
raises.

A batch's loss is the weighted mean of its rows' losses, sum_b w_b l_b / sum_b w_b (w_b = 1
when no weights are given), so a row of weight 2 counts as the row given twice. Per row b,
with z the output layer's pre-activations (B, K) and T = K outputs:

  softmax outputs p = softmax(z), integer class y_b:
    cross_entropy         -sum_k q_bk log p_bk, q = (1 - e) onehot(y_b) + e / K (smoothing e)
    mean_squared_error    sum_k (p_bk - onehot(y_b)_k)^2
  linear outputs z, float targets y (B, T) (regression):
    squared_error         0.5 * mean_t (z_bt - y_bt)^2        (scikit-learn's, with its 1/2)
    absolute_error        mean_t |z_bt - y_bt|
    huber                 mean_t h(z_bt - y_bt), h(r) = 0.5 r^2 for |r| <= d, d (|r| - d/2)
                          beyond (d: huber_delta)
    poisson               sum_t (y log(y / mu) - y + mu), mu = exp(z) (log link)
  sigmoid outputs p = sigmoid(z), 0/1 labels y (B, T) (multilabel):
    binary_cross_entropy  sum_t (softplus(z_bt) - y_bt z_bt)  (= -y log p - (1-y) log(1-p))

Knowledge distillation (Hinton et al. 2015; --teacher) adds to cross_entropy a teacher's
soft targets q_b (the teacher's probabilities softened at temperature T, (B, K) rows of
`targets` beside the labels), with weight a (--distill-weight):
    (1 - a) cross_entropy_b + a T^2 KL(q_b || softmax(z_b / T))       (distill_backward)
whose gradient at z_b is (1 - a) (p_b - onehot) + a T (softmax(z_b / T) - q_b).
"""
import numpy as np

from . import kernel
from .fastmath import fast_exp, scalar_like
from .interface import (ABSOLUTE_ERROR, BINARY_CROSS_ENTROPY, CROSS_ENTROPY, EXP, HUBER,
                        IDENTITY_OUTPUT, LOSSES, MEAN_SQUARED_ERROR, POISSON, SIGMOID_OUTPUT,
                        SOFTMAX, SQUARED_ERROR)  # noqa: F401 (LOSSES: re-exported)


@kernel()
def loss_backward(dlogits, logits, rows, labels, targets, weights, loss_code, weight_total,
                  smoothing, delta):
    """For these rows (B, K) of a batch whose weights sum to weight_total: dlogits =
    d(batch loss)/dlogits; returns (these rows' share of the batch loss, the summed weight of
    the rows predicted right: argmax = class, or every label right; 0 for regression).

    rows[i]: row i's index into labels (N,) (classes) or targets (N, T) (regression,
    multilabel) and weights (N,) (empty: every weight 1). With weight_total = B and no
    weights that is the batch mean loss itself. smoothing: cross-entropy's label smoothing
    e (0: none); delta: huber's d. logits is left unchanged."""
    n_rows, width = logits.shape
    weighted = weights.shape[0] > 0
    loss_sum = 0.0
    correct = 0.0
    for i in range(n_rows):
        r = rows[i]
        w = weights[r] if weighted else 1.0
        # each row's gradient is divided by `per` = weight_total / w (the batch size when
        # unweighted, so that the unweighted path rounds exactly as a plain mean)
        per = weight_total / w
        z, grad = logits[i], dlogits[i]
        if loss_code == CROSS_ENTROPY or loss_code == MEAN_SQUARED_ERROR:
            top = z[0]
            best = 0
            for k in range(1, width):
                if z[k] > top:
                    top = z[k]
                    best = k
            y = labels[r]
            if best == y:
                correct += w
            total = 0.0
            for k in range(width):
                e = np.exp(z[k] - top)
                grad[k] = e
                total += e
            for k in range(width):
                grad[k] /= total  # now the softmax probabilities p
            if loss_code == CROSS_ENTROPY:
                # -log p_k = log(total) - (z_k - top); q_k = e / K, plus (1 - e) for k = y
                loss_sum += w * ((1.0 - smoothing) * (np.log(total) - (z[y] - top)))
                if smoothing > 0.0:
                    spread = smoothing / width
                    for k in range(width):
                        loss_sum += w * (spread * (np.log(total) - (z[k] - top)))
                        grad[k] -= spread
                grad[y] -= 1.0 - smoothing
                for k in range(width):
                    grad[k] /= per
            elif loss_code == MEAN_SQUARED_ERROR:
                # g_k = 2 (p_k - y_k) / per;  dz_j = p_j (g_j - sum_k g_k p_k)
                g_dot_p = 0.0
                for k in range(width):
                    diff = grad[k] - (1.0 if k == y else 0.0)
                    loss_sum += w * (diff * diff)
                    g_dot_p += 2.0 * diff / per * grad[k]
                for k in range(width):
                    p = grad[k]
                    g = 2.0 * (p - (1.0 if k == y else 0.0)) / per
                    grad[k] = p * (g - g_dot_p)
        elif loss_code == BINARY_CROSS_ENTROPY:
            all_right = True
            for k in range(width):
                y = targets[r, k]
                zk = z[k]
                # softplus(z) - y z, computed stably; p = sigmoid(z)
                loss_sum += w * (max(zk, 0.0) + np.log1p(np.exp(-abs(zk))) - y * zk)
                p = 1.0 / (1.0 + np.exp(-zk))
                grad[k] = (p - y) / per
                if (zk > 0.0) != (y > 0.5):
                    all_right = False
            if all_right:
                correct += w
        elif loss_code == POISSON:
            for k in range(width):
                y = targets[r, k]
                mu = np.exp(z[k])
                # y log(y / mu) is 0 at y = 0 (scikit-learn's xlogy)
                y_log = y * (np.log(y) - z[k]) if y > 0.0 else 0.0
                loss_sum += w * (y_log - y + mu)
                grad[k] = (mu - y) / per
        elif loss_code == SQUARED_ERROR or loss_code == ABSOLUTE_ERROR or loss_code == HUBER:
            for k in range(width):
                residual = z[k] - targets[r, k]
                size = abs(residual)
                if loss_code == SQUARED_ERROR:
                    element, slope = 0.5 * residual * residual, residual
                elif loss_code == ABSOLUTE_ERROR:
                    element, slope = size, np.sign(residual)
                elif size <= delta:  # HUBER, the quadratic part
                    element, slope = 0.5 * residual * residual, residual
                else:  # HUBER, the linear part
                    element, slope = delta * (size - 0.5 * delta), delta * np.sign(residual)
                loss_sum += w * (element / width)
                grad[k] = slope / (width * per)
        else:
            raise ValueError("unknown loss code")
    return loss_sum / weight_total, correct


@kernel()
def distill_backward(dlogits, logits, rows, soft_targets, weights, weight_total, hard_loss,
                     distill_weight, temperature):
    """Distillation on top of cross_entropy, for the rows loss_backward has just done:
    dlogits (B, K) holds their cross-entropy gradient and hard_loss their share of the
    batch's cross-entropy; dlogits becomes the gradient of the batch's
    (1 - a) CE + a T^2 KL(q || softmax(z / T)) and its share of that loss is returned.

    q_b = soft_targets[rows[i]] (N, K), the teacher's probabilities softened at T (each row
    sums to 1); a: distill_weight in [0, 1]; T: temperature > 0. The KL term is 0 where the
    student's softened outputs equal the teacher's (q log q = 0 at q = 0). Rows are weighted
    as in loss_backward (weights, weight_total)."""
    n_rows, width = logits.shape
    weighted = weights.shape[0] > 0
    a = distill_weight
    inv_t = 1.0 / temperature
    kl_sum = 0.0
    for i in range(n_rows):
        r = rows[i]
        w = weights[r] if weighted else 1.0
        per = weight_total / w
        z, grad, q = logits[i], dlogits[i], soft_targets[r]
        top = float(z[0])
        for k in range(1, width):
            top = max(top, float(z[k]))
        total = 0.0
        for k in range(width):
            total += np.exp((float(z[k]) - top) * inv_t)
        log_total = np.log(total)
        kl = 0.0
        for k in range(width):
            log_s = (float(z[k]) - top) * inv_t - log_total  # log softmax(z / T)_k
            if q[k] > 0.0:
                kl += q[k] * (np.log(q[k]) - log_s)
            grad[k] = (1.0 - a) * grad[k] + a * temperature * (np.exp(log_s) - q[k]) / per
        kl_sum += w * kl
    return (1.0 - a) * hard_loss + a * temperature * temperature * kl_sum / weight_total


@kernel()
def output_values(outputs, logits, output_code):
    """outputs (B, K) <- the output layer's function of logits (B, K), in their dtype: softmax
    (classes), identity (regression), exp (poisson's log link) or sigmoid (multilabel)."""
    rows, width = logits.shape
    one = scalar_like(1.0, outputs)
    for i in range(rows):
        z, out = logits[i], outputs[i]
        if output_code == SOFTMAX:
            top = z[0]
            for k in range(1, width):
                top = max(top, z[k])
            total = scalar_like(0.0, outputs)
            for k in range(width):
                out[k] = fast_exp(z[k] - top)  # float32: vectorised
                total += out[k]
            for k in range(width):
                out[k] /= total
        elif output_code == IDENTITY_OUTPUT:
            for k in range(width):
                out[k] = z[k]
        elif output_code == EXP:
            for k in range(width):
                out[k] = np.exp(z[k])
        elif output_code == SIGMOID_OUTPUT:
            for k in range(width):
                out[k] = one / (one + fast_exp(-z[k]))
        else:
            raise ValueError("unknown output code")
