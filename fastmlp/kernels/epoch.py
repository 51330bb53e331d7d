"""A whole training epoch, and evaluation, each in one compiled call (no Python per batch).

Buffers: params / grads / state1 / state2 are flat (see fastmlp/model.py for the layout);
`sizes` are the units per layer, `w_offsets` where each W_l starts (b_l follows it).
"""
import numpy as np
from . import kernel

from .activations import IDENTITY
from .dense import dense_backward, dense_forward
from .fastmath import scalar_like
from .losses import softmax_loss_backward
from .optimizers import optimizer_update


@kernel()
def _weights(flat, w_offsets, sizes, l):
    at = w_offsets[l]
    return flat[at:at + sizes[l] * sizes[l + 1]].reshape(sizes[l], sizes[l + 1])


@kernel()
def _bias(flat, w_offsets, sizes, l):
    at = w_offsets[l] + sizes[l] * sizes[l + 1]
    return flat[at:at + sizes[l + 1]]


@kernel()
def _activation_offsets(sizes, batch_size):
    """Where A_1 .. A_L (A_L = logits) start in one flat activation buffer."""
    offsets = np.zeros(len(sizes), dtype=np.int64)
    for l in range(1, len(sizes)):
        offsets[l] = offsets[l - 1] + batch_size * sizes[l]
    return offsets


@kernel()
def _forward(acts, act_offsets, x_batch, params, w_offsets, sizes, act_code):
    """Fill A_1 .. A_L for x_batch (rows, 784); returns the logits view (rows, K)."""
    rows = x_batch.shape[0]
    num_dense = len(sizes) - 1
    a_in = x_batch
    for l in range(num_dense):
        at = act_offsets[l]
        out = acts[at:at + rows * sizes[l + 1]].reshape(rows, sizes[l + 1])
        code = act_code if l < num_dense - 1 else IDENTITY
        dense_forward(out, a_in, _weights(params, w_offsets, sizes, l),
                      _bias(params, w_offsets, sizes, l), code)
        a_in = out
    return a_in


@kernel(nogil=True)
def train_epoch(params, state1, state2, grads, progress, t, pixels, labels, order, batch_size, sizes,
                w_offsets, segments, act_code, loss_code, opt_code,
                lr, momentum, beta, beta1, beta2, eps, weight_decay):
    """One pass over pixels[order] (uint8, scaled to x = pixels / 255 as each batch is
    gathered: a quarter of the memory traffic of float rows) in batches of batch_size (the
    last may be smaller), one
    optimizer step per batch; progress[0] counts the batches done (another thread may read
    it: the kernel runs without the GIL). Returns (sum of batch mean losses, correct predictions,
    batches run, step count t after the epoch); stops early at a non-finite loss, so
    batches run < the number of batches tells the caller it diverged."""
    num_dense = len(sizes) - 1
    n = order.shape[0]
    widest = 0
    for l in range(1, len(sizes)):
        widest = max(widest, sizes[l])
    x_batch_buf = np.empty(batch_size * sizes[0], dtype=params.dtype)
    acts = np.empty(_activation_offsets(sizes, batch_size)[-1], dtype=params.dtype)
    act_offsets = _activation_offsets(sizes, batch_size)
    dz_a = np.empty(batch_size * widest, dtype=params.dtype)
    dz_b = np.empty(batch_size * widest, dtype=params.dtype)
    label_batch = np.empty(batch_size, dtype=np.int64)
    full_scale = scalar_like(255.0, params)

    loss_sum = 0.0
    correct = 0
    batches = 0
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        x_batch = x_batch_buf[:rows * sizes[0]].reshape(rows, sizes[0])
        for i in range(rows):
            source, target = pixels[order[start + i]], x_batch[i]
            for j in range(sizes[0]):
                target[j] = source[j] / full_scale
            label_batch[i] = labels[order[start + i]]

        logits = _forward(acts, act_offsets, x_batch, params, w_offsets, sizes, act_code)
        dz = dz_a[:rows * sizes[num_dense]].reshape(rows, sizes[num_dense])
        batch_loss, batch_correct = softmax_loss_backward(dz, logits, label_batch[:rows], loss_code)
        if not np.isfinite(batch_loss):
            return loss_sum, correct, batches, t

        for l in range(num_dense - 1, -1, -1):
            if l > 0:
                at = act_offsets[l - 1]
                a_in = acts[at:at + rows * sizes[l]].reshape(rows, sizes[l])
            else:
                a_in = x_batch
            if l > 0:  # ping-pong: dz of layer l is in one buffer, dz_in goes to the other
                spare = dz_b if l % 2 == (num_dense - 1) % 2 else dz_a
                dz_in = spare[:rows * sizes[l]].reshape(rows, sizes[l])
            else:
                dz_in = x_batch  # not written: the input layer needs no gradient
            dense_backward(_weights(grads, w_offsets, sizes, l), _bias(grads, w_offsets, sizes, l),
                           dz_in, dz, a_in, _weights(params, w_offsets, sizes, l), act_code, l > 0)
            dz = dz_in

        t += 1
        optimizer_update(params, state1, state2, grads, segments, t, opt_code,
                         lr, momentum, beta, beta1, beta2, eps, weight_decay)
        loss_sum += batch_loss
        correct += batch_correct
        batches += 1
        progress[0] = batches
    return loss_sum, correct, batches, t


@kernel(nogil=True)
def evaluate(predictions, x, labels, params, sizes, w_offsets, act_code, loss_code):
    """predictions (N,) <- argmax of the logits; returns the mean loss over all N rows."""
    n = x.shape[0]
    chunk = 1024
    acts = np.empty(_activation_offsets(sizes, chunk)[-1], dtype=params.dtype)
    act_offsets = _activation_offsets(sizes, chunk)
    classes = sizes[len(sizes) - 1]
    dlogits_buf = np.empty(chunk * classes, dtype=params.dtype)
    loss_sum = 0.0
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        logits = _forward(acts, act_offsets, x[start:start + rows], params, w_offsets, sizes,
                          act_code)
        dlogits = dlogits_buf[:rows * classes].reshape(rows, classes)
        chunk_loss, _ = softmax_loss_backward(dlogits, logits, labels[start:start + rows],
                                              loss_code)
        loss_sum += chunk_loss * rows
        for i in range(rows):
            predictions[start + i] = np.argmax(logits[i])
    return loss_sum / n
