"""Softmax output and the two losses. The names and codes are in kernels/interface.py
(LOSSES); every branch names its code, and an unknown code raises.

cross_entropy      = -(1/B) sum_b sum_k q_bk log softmax(z_b)[k],
                     q = (1 - e) onehot(y_b) + e / K  (label smoothing e; e = 0: -log p[y_b])
mean_squared_error =  (1/B) sum_b sum_k (softmax(z_b)[k] - onehot(y_b)[k])^2
"""
import numpy as np
from . import kernel
from .interface import CROSS_ENTROPY, LOSSES, MEAN_SQUARED_ERROR  # noqa: F401 (re-exported)


@kernel()
def softmax_loss_backward(dlogits, logits, labels, loss_code, batch_rows, smoothing):
    """For these rows (B, K) of a batch of batch_rows rows: dlogits = dLoss/dlogits of the
    batch mean loss; returns (these rows' share of the batch mean loss, number of rows whose
    argmax equals the label). With batch_rows = B that is the batch mean loss itself.
    smoothing: cross-entropy's label smoothing e (0: none). logits is left unchanged."""
    rows, classes = logits.shape
    loss_sum = 0.0
    correct = 0
    for i in range(rows):
        top = logits[i, 0]
        best = 0
        for k in range(1, classes):
            if logits[i, k] > top:
                top = logits[i, k]
                best = k
        if best == labels[i]:
            correct += 1
        total = 0.0
        for k in range(classes):
            e = np.exp(logits[i, k] - top)
            dlogits[i, k] = e
            total += e
        for k in range(classes):
            dlogits[i, k] /= total  # now the softmax probabilities p
        y = labels[i]
        if loss_code == CROSS_ENTROPY:
            # -log p_k = log(total) - (z_k - top); q_k = e / K, plus (1 - e) for k = y
            loss_sum += (1.0 - smoothing) * (np.log(total) - (logits[i, y] - top))
            if smoothing > 0.0:
                spread = smoothing / classes
                for k in range(classes):
                    loss_sum += spread * (np.log(total) - (logits[i, k] - top))
                    dlogits[i, k] -= spread
            dlogits[i, y] -= 1.0 - smoothing
            for k in range(classes):
                dlogits[i, k] /= batch_rows
        elif loss_code == MEAN_SQUARED_ERROR:
            # g_k = 2 (p_k - y_k) / B;  dz_j = p_j (g_j - sum_k g_k p_k)
            g_dot_p = 0.0
            for k in range(classes):
                diff = dlogits[i, k] - (1.0 if k == y else 0.0)
                loss_sum += diff * diff
                g_dot_p += 2.0 * diff / batch_rows * dlogits[i, k]
            for k in range(classes):
                p = dlogits[i, k]
                g = 2.0 * (p - (1.0 if k == y else 0.0)) / batch_rows
                dlogits[i, k] = p * (g - g_dot_p)
        else:
            raise ValueError("unknown loss code")
    return loss_sum / batch_rows, correct
