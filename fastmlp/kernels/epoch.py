"""A whole training epoch, and inference, each in one compiled call (no Python per batch).

Arguments travel in bundles, so that a new choice or hyperparameter is one entry, not a new
argument through every layer (kernels/interface.py declares them):
    buffers  (4, P) float array: rows params, state1, state2, grads (BUFFERS), each a flat
             buffer of one layout. (Not a tuple: Numba's parallel lowering loses a slice
             assignment to an array unpacked from a tuple.)
    net      (sizes, w_offsets, segments): units per layer, where each W_l starts (b_l
             follows it), and the weight-decay segments (fastmlp/model.py, Layout.arrays)
    codes    int64 array of the choices the kernels branch on, indexed by CODE_*
    hyper    float64 array of the float settings, indexed by HP_*
and what is learnt, per row: labels (N,) int64 class indices (classification), targets
(N, T) float64 (regression, multilabel: the other is empty; classification with a teacher:
its soft targets (N, K) beside the labels, read when hyper's distill_weight > 0), weights
(N,) float64 (empty: every row weighs 1; losses and accuracy are weighted means,
kernels/losses.py).
Both entry points (train_epoch, infer) first check the codes (interface.check_codes).
"""
import numpy as np
from numba import prange, types
from numba.extending import overload

from . import kernel

from .activations import needs_pre_activations
from .deform import (deformations_on, deformed_image, drawn_affine, elastic_field,
                     lattice_weights)
from .dense import dense_backward, dense_forward, dense_forward_keeping_z, dense_forward_normed
from .fastmath import flush_denormals, restore_denormals, scalar_like
from .interface import (CODE_ACTIVATION, CODE_FLIP, CODE_IMAGE_WIDTH, CODE_LOSS, CODE_NORM,
                        CODE_OPTIMIZER, CODE_OUTPUT, CODE_RESIDUAL, CODE_SCHEDULE, CODE_SHIFT,
                        CROSS_ENTROPY, HP_DISTILL_WEIGHT, HP_DROPOUT, HP_ELASTIC,
                        HP_ELASTIC_SIGMA, HP_HUBER_DELTA, HP_INPUT_DROPOUT, HP_LABEL_SMOOTHING,
                        HP_LEAKY_SLOPE, HP_LEARNING_RATE, HP_ROTATE, HP_SCALE, HP_SEED,
                        HP_SHEAR, HP_TEMPERATURE, HP_TOTAL_STEPS, HP_WARMUP_STEPS, IDENTITY,
                        BATCH_NORM, LAYER_NORM, NO_NORM, NORM_VECTOR_COUNTS, check_codes,
                        has_norm, has_skip)
from .losses import distill_backward, loss_backward, output_values
from .norm import batch_norm_backward, batch_norm_track, layer_norm_backward
from .optimizers import optimizer_update
from .random import STREAM_DROPOUT, STREAM_FLIP, STREAM_INPUT_DROPOUT, STREAM_SHIFT_X, \
    STREAM_SHIFT_Y, uniform
from .schedules import scheduled_lr


def input_divisor(inputs) -> float:
    """What each input value is divided by as a batch is gathered: 255 for uint8 pixels
    (scaled to [0, 1]), 1 for float features (used as they are). The NumPy side of this
    rule is data.model_inputs."""
    return 255.0 if inputs.dtype == np.uint8 else 1.0


@overload(input_divisor, inline="always")
def _input_divisor_overload(inputs):
    if isinstance(inputs.dtype, types.Integer):
        return lambda inputs: 255.0
    return lambda inputs: 1.0


@kernel()
def _weights(flat, w_offsets, sizes, l):
    at = w_offsets[l]
    return flat[at:at + sizes[l] * sizes[l + 1]].reshape(sizes[l], sizes[l + 1])


@kernel()
def _bias(flat, w_offsets, sizes, l):
    at = w_offsets[l] + sizes[l] * sizes[l + 1]
    return flat[at:at + sizes[l + 1]]


@kernel()
def _vectors(flat, w_offsets, sizes, l, norm):
    """The (k, n_out) vectors of normed dense layer l (has_norm) after its weights: bias,
    gamma, beta, and BatchNorm's running mean and variance (interface.NORM_VECTORS)."""
    at, width = w_offsets[l] + sizes[l] * sizes[l + 1], sizes[l + 1]
    count = NORM_VECTOR_COUNTS[norm]
    return flat[at:at + count * width].reshape(count, width)


@kernel()
def _activation_offsets(sizes, batch_size):
    """Where A_1 .. A_L (A_L = logits) start in one flat activation buffer."""
    offsets = np.zeros(len(sizes), dtype=np.int64)
    for l in range(1, len(sizes)):
        offsets[l] = offsets[l - 1] + batch_size * sizes[l]
    return offsets


@kernel()
def _forward(acts, act_offsets, x_batch, params, w_offsets, sizes, act_code, slope, residual,
             norm):
    """Fill A_1 .. A_L for x_batch (rows, n_in); returns the logits view (rows, K)."""
    nothing = acts[:1]  # nothing kept (kept and scales of one element)
    return _forward_training(acts, nothing, nothing, acts[:0], act_offsets, x_batch, params,
                             w_offsets, sizes, act_code, slope, residual, norm, False, 0.0, 0,
                             0, 0)


@kernel()
def _norm_kept(norm_kept, act_offsets, sizes, rows, l, norm):
    """(x (rows, n), statistics) of hidden layer l's normalisation in one shard's norm_kept
    buffer: x in the activations' layout, then per dense layer _norm_stats_room(sizes, rows)
    for the statistics: 1 / std per row, (1, rows), for LayerNorm; per unit 1 / std, the
    batch's mean and unbiased variance, (3, n), for BatchNorm (batch_norm_forward)."""
    at, width = act_offsets[l], sizes[l + 1]
    std_at = act_offsets[len(sizes) - 1] + l * _norm_stats_room(sizes, rows)
    kinds, count = (1, rows) if norm == LAYER_NORM else (3, width)
    return (norm_kept[at:at + rows * width].reshape(rows, width),
            norm_kept[std_at:std_at + kinds * count].reshape(kinds, count))


@kernel()
def _norm_stats_room(sizes, rows):
    """Room for one dense layer's normalisation statistics in norm_kept (_norm_kept)."""
    return max(rows, 3 * _widest(sizes))


@kernel()
def _widest(sizes):
    """The most units of any layer after the input."""
    widest = 0
    for l in range(1, len(sizes)):
        widest = max(widest, sizes[l])
    return widest


@kernel()
def _forward_training(acts, kept, scales, norm_kept, act_offsets, x_batch, params, w_offsets,
                      sizes, act_code, slope, residual, norm, keep_z, dropout, seed, t,
                      first_row):
    """_forward, keeping in `kept` (same layout as acts) what each hidden layer's backward
    pass reads besides A_l (dense_backward's in_kept), and with inverted dropout on every
    hidden layer's output when dropout > 0: A_l = act(Z_l) * S_l, S_l = mask / (1 - p) kept
    in `scales`; a layer with a skip (has_skip) then adds its input. kept holds Z_l when
    keep_z (the activation needs its pre-activations: activations.needs_pre_activations),
    else act(Z_l) before dropout and skip when dropout > 0 or residual (`kept_act`), else
    nothing (the derivative reads A_l itself). Row i of the batch draws its mask with the
    key (seed, t, STREAM_DROPOUT + l, first_row + i, unit). With --norm layer (has_norm)
    Z_l is LayerNorm's output gamma x + beta (kernels/norm.py), and norm_kept keeps x and
    1 / std for the backward pass (_norm_kept), unless it has no elements (inference)."""
    rows = x_batch.shape[0]
    num_dense = len(sizes) - 1
    keep_scale = scalar_like(1.0 / (1.0 - dropout), params)
    zero = scalar_like(0.0, params)
    kept_act = not keep_z and (dropout > 0.0 or residual != 0) and kept.shape[0] > 1
    a_in = x_batch
    for l in range(num_dense):
        at = act_offsets[l]
        width = sizes[l + 1]
        out = acts[at:at + rows * width].reshape(rows, width)
        hidden = l < num_dense - 1
        weights, bias = _weights(params, w_offsets, sizes, l), _bias(params, w_offsets, sizes, l)
        if has_norm(sizes, l, norm):
            # nothing kept: inference
            normed, stats = acts[:0].reshape(0, width), acts[:0].reshape(0, width)
            if norm_kept.shape[0] > 0:
                normed, stats = _norm_kept(norm_kept, act_offsets, sizes, rows, l, norm)
            z = kept[at:at + rows * width].reshape(rows, width) if keep_z else out
            dense_forward_normed(out, z, a_in, weights, _vectors(params, w_offsets, sizes, l, norm),
                                 norm, normed, stats, act_code, slope, keep_z)
        elif hidden and keep_z:
            z = kept[at:at + rows * width].reshape(rows, width)
            dense_forward_keeping_z(out, z, a_in, weights, bias, act_code, slope)
        else:
            dense_forward(out, a_in, weights, bias, act_code if hidden else IDENTITY, slope)
        if hidden and kept_act:
            before = kept[at:at + rows * width].reshape(rows, width)
            before[:] = out
        if hidden and dropout > 0.0:
            scale = scales[at:at + rows * width].reshape(rows, width)
            for i in range(rows):
                for j in range(width):
                    keep = uniform(seed, t, STREAM_DROPOUT + l, first_row + i, j) >= dropout
                    scale[i, j] = keep_scale if keep else zero
                    out[i, j] = out[i, j] * scale[i, j]
        if has_skip(sizes, l, residual):
            for i in range(rows):
                for j in range(width):
                    out[i, j] += a_in[i, j]
        a_in = out
    return a_in


@kernel()
def _drawn_shift_and_flip(seed, t, row, shift, flip):
    """--augment's draws for example `row` of batch t: (dx, dy) in [-shift, shift] and
    whether it is mirrored (probability 1/2 when flip)."""
    dx = dy = 0
    if shift > 0:
        span = 2 * shift + 1
        dx = np.int64(uniform(seed, t, STREAM_SHIFT_X, row, 0) * span) - shift
        dy = np.int64(uniform(seed, t, STREAM_SHIFT_Y, row, 0) * span) - shift
    mirrored = flip != 0 and uniform(seed, t, STREAM_FLIP, row, 0) < 0.5
    return dx, dy, mirrored


@kernel()
def _gather(x_batch, pixels, rows_order, codes, hyper, t, first_row):
    """x_batch[i] <- the model's input for example rows_order[i]: pixels scaled (or float
    features as they are), with this step's augmentation (a shift of up to `shift` pixels
    each way, zero-filled, and a horizontal flip with probability 1/2, both drawn per example)
    and input dropout. Row i draws with the key (seed, t, stream, first_row + i, ...). With a
    deformation on, _gather_deformed does it all instead."""
    if deformations_on(hyper):
        _gather_deformed(x_batch, pixels, rows_order, codes, hyper, t, first_row)
        return
    rows, width = x_batch.shape
    divisor = scalar_like(input_divisor(pixels), x_batch)
    shift, flip = codes[CODE_SHIFT], codes[CODE_FLIP]
    image_width = codes[CODE_IMAGE_WIDTH]
    seed = np.int64(hyper[HP_SEED])
    p_in = hyper[HP_INPUT_DROPOUT]
    keep_scale = scalar_like(1.0 / (1.0 - p_in), x_batch)
    zero = scalar_like(0.0, x_batch)
    for i in range(rows):
        source, target = pixels[rows_order[i]], x_batch[i]
        row = first_row + i
        if shift > 0 or flip != 0:
            height = width // image_width
            dx, dy, mirrored = _drawn_shift_and_flip(seed, t, row, shift, flip)
            for y in range(height):
                for x in range(image_width):
                    # out = shift(flip(image)): out[y, x] = flip(image)[y - dy, x - dx]
                    from_x = x - dx
                    if mirrored:
                        from_x = image_width - 1 - from_x
                    from_y = y - dy
                    inside = 0 <= from_x < image_width and 0 <= from_y < height
                    target[y * image_width + x] = (
                        source[from_y * image_width + from_x] / divisor if inside else zero)
        else:
            for j in range(width):
                target[j] = source[j] / divisor
        if p_in > 0.0:
            for j in range(width):
                keep = uniform(seed, t, STREAM_INPUT_DROPOUT, row, j) >= p_in
                target[j] = target[j] * keep_scale if keep else zero


@kernel()
def _gather_deformed(x_batch, pixels, rows_order, codes, hyper, t, first_row):
    """_gather with the deformations (kernels/deform.py): x_batch[i] <- shift(flip(D)) of
    example rows_order[i], D its deformed image, then input dropout; the shift and the flip
    draw as in _gather. The deformation is computed in float64 from the pixels as they are,
    then divided by input_divisor."""
    rows, width = x_batch.shape
    divisor = input_divisor(pixels)
    shift, flip = codes[CODE_SHIFT], codes[CODE_FLIP]
    image_width = codes[CODE_IMAGE_WIDTH]
    height = width // image_width
    seed = np.int64(hyper[HP_SEED])
    p_in = hyper[HP_INPUT_DROPOUT]
    keep_scale = scalar_like(1.0 / (1.0 - p_in), x_batch)
    zero = scalar_like(0.0, x_batch)
    rotate, scale, shear = hyper[HP_ROTATE], hyper[HP_SCALE], hyper[HP_SHEAR]
    alpha, sigma = hyper[HP_ELASTIC], hyper[HP_ELASTIC_SIGMA]
    elastic = alpha > 0.0
    if elastic:  # the lattice's weights: the same for every example
        row_weights = lattice_weights(height, sigma)
        col_weights = lattice_weights(image_width, sigma)
    else:
        row_weights, col_weights = np.zeros((1, height)), np.zeros((1, image_width))
    field = np.zeros((2, height if elastic else 1, image_width if elastic else 1))
    partial = np.empty((row_weights.shape[0], image_width))
    for i in range(rows):
        source, target = pixels[rows_order[i]], x_batch[i]
        row = first_row + i
        dx, dy, mirrored = _drawn_shift_and_flip(seed, t, row, shift, flip)
        m00, m01, m10, m11 = drawn_affine(seed, t, row, rotate, scale, shear)
        if elastic:
            elastic_field(field, partial, row_weights, col_weights, seed, t, row, alpha)
        deformed_image(target, source, image_width, height, divisor, m00, m01, m10, m11, field,
                       elastic, dx, dy, mirrored)
        if p_in > 0.0:
            for j in range(width):
                keep = uniform(seed, t, STREAM_INPUT_DROPOUT, row, j) >= p_in
                target[j] = target[j] * keep_scale if keep else zero


@kernel()
def _batch_gradients(grads, x_batch, acts, kept, scales, norm_kept, dz_a, dz_b, carried,
                     pixels, labels, targets, weights, rows_order, first_row, weight_total,
                     params, w_offsets, sizes, codes, hyper, t):
    """Gather this share of batch t (rows_order, starting at first_row of the batch) into
    x_batch, run forward and backward, and write its share of the batch's gradient into grads
    (flat). weight_total: the whole batch's summed weight (its size when unweighted), the
    divisor of the batch loss. carried: where a skip connection's gradient waits for the
    layer below (--residual). norm_kept: what LayerNorm's backward pass reads (--norm
    layer; _norm_kept). Returns (this share of the batch loss, the weight of its rows
    predicted right)."""
    num_dense = len(sizes) - 1
    rows = rows_order.shape[0]
    act_code, loss_code = codes[CODE_ACTIVATION], codes[CODE_LOSS]
    slope, dropout = hyper[HP_LEAKY_SLOPE], hyper[HP_DROPOUT]
    keep_z = needs_pre_activations(act_code)
    residual, norm = codes[CODE_RESIDUAL], codes[CODE_NORM]
    x_batch = x_batch[:rows * sizes[0]].reshape(rows, sizes[0])
    _gather(x_batch, pixels, rows_order, codes, hyper, t, first_row)

    act_offsets = _activation_offsets(sizes, rows)
    logits = _forward_training(acts, kept, scales, norm_kept, act_offsets, x_batch, params,
                               w_offsets, sizes, act_code, slope, residual, norm, keep_z,
                               dropout, np.int64(hyper[HP_SEED]), t, first_row)
    dz = dz_a[:rows * sizes[num_dense]].reshape(rows, sizes[num_dense])
    loss, correct = loss_backward(dz, logits, rows_order, labels, targets, weights, loss_code,
                                  weight_total, hyper[HP_LABEL_SMOOTHING], hyper[HP_HUBER_DELTA])
    if hyper[HP_DISTILL_WEIGHT] > 0.0:  # a teacher's soft targets, in targets (N, K)
        loss = distill_backward(dz, logits, rows_order, targets, weights, weight_total, loss,
                                hyper[HP_DISTILL_WEIGHT], hyper[HP_TEMPERATURE])

    for l in range(num_dense - 1, -1, -1):
        if l > 0:
            at = act_offsets[l - 1]
            n_in = sizes[l]
            a_in = acts[at:at + rows * n_in].reshape(rows, n_in)
            # ping-pong: dz of layer l is in one buffer, dz_in goes to the other
            spare = dz_b if l % 2 == (num_dense - 1) % 2 else dz_a
            dz_in = spare[:rows * n_in].reshape(rows, n_in)
            # what act' reads (_forward_training): Z_l or act(Z_l) kept, else A_l itself
            in_kept = a_in
            if keep_z or dropout > 0.0 or residual != 0:
                in_kept = kept[at:at + rows * n_in].reshape(rows, n_in)
            in_scales = a_in
            if dropout > 0.0:
                in_scales = scales[at:at + rows * n_in].reshape(rows, n_in)
            # skips: dLoss/dA_{l+1} waits in `carried` for A_l, and dLoss/dA_l for A_{l-1}
            none = carried[:0].reshape(0, n_in)
            skip_grad = carry = none
            if residual != 0:
                waiting = carried[:rows * n_in].reshape(rows, n_in)
                if has_skip(sizes, l, residual):
                    skip_grad = waiting
                if has_skip(sizes, l - 1, residual):
                    carry = waiting
        else:
            a_in = in_kept = in_scales = x_batch
            dz_in = x_batch  # not written: the input layer needs no gradient
            skip_grad = carry = x_batch[:0]
        dense_backward(_weights(grads, w_offsets, sizes, l), _bias(grads, w_offsets, sizes, l),
                       dz_in, dz, a_in, _weights(params, w_offsets, sizes, l), act_code, slope,
                       l > 0, in_kept, in_scales, l > 0 and dropout > 0.0, skip_grad, carry)
        if l > 0 and has_norm(sizes, l - 1, norm):  # dz_in is dLoss/dy: through the norm
            normed, stats = _norm_kept(norm_kept, act_offsets, sizes, rows, l - 1, norm)
            vectors = _vectors(params, w_offsets, sizes, l - 1, norm)
            grad_vectors = _vectors(grads, w_offsets, sizes, l - 1, norm)
            if norm == LAYER_NORM:
                layer_norm_backward(dz_in, normed, stats[0], vectors[1], grad_vectors[1],
                                    grad_vectors[2])
            else:
                batch_norm_backward(dz_in, normed, stats[0], vectors[1], grad_vectors[1],
                                    grad_vectors[2])
                # BatchNorm's running statistics move here, not in the forward pass, which
                # inference also runs on parameters that may be read-only
                batch_norm_track(vectors[3], vectors[4], stats)
        dz = dz_in
    return loss, correct


@kernel(nogil=True, parallel=True)
def train_epoch(buffers, progress, t, pixels, labels, targets, weights, order, batch_size, net,
                codes, hyper, shards):
    """One pass over pixels[order] in batches of batch_size (the last may be smaller), one
    optimizer step per batch, at the learning rate the schedule gives that step.

    pixels are uint8, scaled to x = pixels / 255 as each batch is gathered (a quarter of the
    memory traffic of float rows), or float features. With shards > 1 each batch is split by
    rows into that many parts whose gradients are computed in parallel (one thread each,
    single-threaded BLAS) and summed; the sum and the optimizer step are split by parameter
    ranges the same way. progress[0] counts the batches done (another thread may read it: no
    GIL is held). grads receives the gradient of the last batch. Returns (sum of batch
    losses, the summed weight of the rows predicted right, batches run, step count t after
    the epoch, learning rate of the last step); stops early at a non-finite loss, so fewer
    batches than expected tells the caller it diverged."""
    check_codes(codes)
    if deformations_on(hyper) and codes[CODE_IMAGE_WIDTH] <= 0:
        raise ValueError("hyper: a deformation needs images (codes: image_width is 0)")
    params = buffers[0]  # one statement each: see the module docstring on tuples
    state1 = buffers[1]
    state2 = buffers[2]
    grads = buffers[3]
    sizes, w_offsets, segments = net
    if hyper[HP_DISTILL_WEIGHT] > 0.0 and (
            codes[CODE_LOSS] != CROSS_ENTROPY or hyper[HP_TEMPERATURE] <= 0.0
            or targets.shape[0] != labels.shape[0] or targets.shape[1] != sizes[len(sizes) - 1]):
        raise ValueError("distillation: cross_entropy, a temperature > 0 and soft targets "
                         "(N, K) beside the labels (N,)")
    opt_code, schedule = codes[CODE_OPTIMIZER], codes[CODE_SCHEDULE]
    base_lr, total, warmup = hyper[HP_LEARNING_RATE], hyper[HP_TOTAL_STEPS], hyper[HP_WARMUP_STEPS]
    n = order.shape[0]
    num_params = params.shape[0]
    # BatchNorm's statistics are the whole batch's: its batches go in one shard, whatever
    # the thread count (the optimizer step is one thread then too)
    per_shard = batch_size if codes[CODE_NORM] == BATCH_NORM else -(-batch_size // shards)
    widest = _widest(sizes)
    x_bufs = np.empty((shards, per_shard * sizes[0]), dtype=params.dtype)
    act_size = _activation_offsets(sizes, per_shard)[-1]
    act_bufs = np.empty((shards, act_size), dtype=params.dtype)
    # kept (per shard): what the backward pass reads besides the activations, only where
    # something is kept (_forward_training): Z_l for GELU and SiLU, act(Z_l) under dropout
    # or skips
    dropped = hyper[HP_DROPOUT] > 0.0
    residual = codes[CODE_RESIDUAL]
    kept_size = (act_size if dropped or residual != 0 or needs_pre_activations(
        codes[CODE_ACTIVATION]) else 1)
    kept_bufs = np.empty((shards, kept_size), dtype=params.dtype)
    scale_bufs = np.empty((shards, act_size if dropped else 1), dtype=params.dtype)
    # the normalisation's x and 1 / std per hidden layer (_norm_kept), with --norm
    normed = codes[CODE_NORM] != NO_NORM
    norm_size = act_size + _norm_stats_room(sizes, per_shard) * len(sizes) if normed else 1
    norm_bufs = np.empty((shards, norm_size), dtype=params.dtype)
    dz_a = np.empty((shards, per_shard * widest), dtype=params.dtype)
    dz_b = np.empty((shards, per_shard * widest), dtype=params.dtype)
    carried = np.empty((shards, per_shard * widest if residual != 0 else 1), dtype=params.dtype)
    shard_grads = np.zeros((shards, num_params), dtype=params.dtype)
    shard_loss = np.zeros(shards)
    shard_correct = np.zeros(shards)
    weighted = weights.shape[0] > 0
    param_bounds = np.linspace(0, num_params, shards + 1).astype(np.int64)

    loss_sum = 0.0
    correct = 0.0
    batches = 0
    lr = scheduled_lr(base_lr, schedule, float(t), total, warmup)
    caller_mode = flush_denormals()  # on every thread that works (fastmath.py explains why)
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        used = -(-rows // per_shard)  # shards that get rows in this batch
        step = t + 1  # the step this batch makes: its random draws are keyed by it
        weight_total = float(rows)
        if weighted:
            weight_total = 0.0
            for i in range(start, start + rows):
                weight_total += weights[order[i]]
        if used == 1:  # no thread launch at all
            shard_loss[0], shard_correct[0] = _batch_gradients(
                shard_grads[0], x_bufs[0], act_bufs[0], kept_bufs[0], scale_bufs[0],
                norm_bufs[0], dz_a[0], dz_b[0], carried[0], pixels, labels, targets, weights,
                order[start:start + rows], 0, weight_total, params, w_offsets, sizes, codes,
                hyper, step)
        else:
            for s in prange(used):
                thread_mode = flush_denormals()
                first = start + s * per_shard
                last = min(start + rows, first + per_shard)
                shard_loss[s], shard_correct[s] = _batch_gradients(
                    shard_grads[s], x_bufs[s], act_bufs[s], kept_bufs[s], scale_bufs[s],
                    norm_bufs[s], dz_a[s], dz_b[s], carried[s], pixels, labels, targets,
                    weights,
                    order[first:last], first - start, weight_total, params, w_offsets, sizes,
                    codes, hyper, step)
                restore_denormals(thread_mode)
        batch_loss = 0.0
        for s in range(used):
            batch_loss += shard_loss[s]
            correct += shard_correct[s]
        if not np.isfinite(batch_loss):
            restore_denormals(caller_mode)
            return loss_sum, correct, batches, t, lr

        t = step
        lr = scheduled_lr(base_lr, schedule, float(t), total, warmup)
        if used == 1:
            optimizer_update(params, state1, state2, shard_grads[0], segments, t, opt_code,
                             hyper, lr, 0, num_params)
        else:
            for s in prange(shards):  # sum the shards' gradients into shard 0, then step
                thread_mode = flush_denormals()
                lo, hi = param_bounds[s], param_bounds[s + 1]
                total_grad = shard_grads[0, lo:hi]
                for other in range(1, used):
                    part = shard_grads[other, lo:hi]
                    for i in range(hi - lo):
                        total_grad[i] += part[i]
                optimizer_update(params, state1, state2, shard_grads[0], segments, t, opt_code,
                                 hyper, lr, lo, hi)
                restore_denormals(thread_mode)
        loss_sum += batch_loss
        batches += 1
        progress[0] = batches
    grads[:] = shard_grads[0]
    restore_denormals(caller_mode)
    return loss_sum, correct, batches, t, lr


INFERENCE_CHUNK = 1024  # rows per forward pass of inference


@kernel(nogil=True, parallel=True)
def infer(outputs, predictions, x, labels, targets, weights, params, net, codes, hyper,
          workers):
    """The one forward pass of inference, over all N rows of x (in the parameters' dtype):
    predictions (N,) <- the argmax of each row's logits (the class, for softmax outputs);
    outputs (N, K) <- the output layer's values (softmax probabilities, regression values,
    exp's means, sigmoid probabilities: losses.output_values), unless outputs has no rows;
    returns the loss over the N rows (weighted by weights, unless empty; no label smoothing)
    when labels or targets has N rows, else 0.

    The rows go forward in chunks; `workers` threads take every workers-th chunk, each with
    its own buffers (single-threaded BLAS inside: the caller limits it), so one thread pool
    owns the cores. Chunk losses are summed in chunk order: the result does not depend on
    the number of workers."""
    check_codes(codes)
    sizes, w_offsets, _ = net
    act_code, loss_code, output_code = codes[CODE_ACTIVATION], codes[CODE_LOSS], codes[CODE_OUTPUT]
    slope = hyper[HP_LEAKY_SLOPE]
    n = x.shape[0]
    want_outputs = outputs.shape[0] == n
    want_loss = labels.shape[0] == n or targets.shape[0] == n
    weight_total = float(n)
    if weights.shape[0] > 0:
        weight_total = 0.0
        for i in range(n):
            weight_total += weights[i]
    chunk = INFERENCE_CHUNK
    chunks = -(-n // chunk)
    workers = max(1, min(workers, chunks))
    act_offsets = _activation_offsets(sizes, chunk)
    classes = sizes[len(sizes) - 1]
    acts = np.empty((workers, act_offsets[-1]), dtype=params.dtype)
    dlogits_bufs = np.empty((workers, chunk * classes if want_loss else 1), dtype=params.dtype)
    every_row = np.arange(n)
    chunk_losses = np.zeros(chunks)
    for w in prange(workers):
        thread_mode = flush_denormals()
        for c in range(w, chunks, workers):
            start = c * chunk
            rows = min(chunk, n - start)
            logits = _forward(acts[w], act_offsets, x[start:start + rows], params, w_offsets,
                              sizes, act_code, slope, codes[CODE_RESIDUAL], codes[CODE_NORM])
            for i in range(rows):
                predictions[start + i] = np.argmax(logits[i])
            if want_outputs:
                output_values(outputs[start:start + rows], logits, output_code)
            if want_loss:
                dlogits = dlogits_bufs[w, :rows * classes].reshape(rows, classes)
                chunk_losses[c], _ = loss_backward(
                    dlogits, logits, every_row[start:start + rows], labels, targets, weights,
                    loss_code, weight_total, 0.0, hyper[HP_HUBER_DELTA])
        restore_denormals(thread_mode)
    loss_sum = 0.0
    for c in range(chunks):
        loss_sum += chunk_losses[c]
    return loss_sum
