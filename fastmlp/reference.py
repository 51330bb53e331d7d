"""The whole model in plain NumPy, written to be read.

This is the test oracle for the Numba kernels and the baseline of every benchmark. It is the
math of record (docs/ARCHITECTURE.md points here), on a list of (W, b) arrays, one batch at a
time:

    input:     X = the batch's examples, deformed (deform: affine and elastic, bilinear),
               then flipped and shifted (augment), times S_0 (input dropout:
               S = mask / (1 - p), mask ~ Bernoulli(1 - p); no dropout: S = 1)
    forward:   A_0 = X;  Z_{l+1} = A_l @ W_l + b_l;  A_{l+1} = act(Z_{l+1}) * S_{l+1};
               P = softmax(A_L @ W_L + b_L)
    losses:    the weighted mean sum_b w_b l_b / sum_b w_b of the rows' losses l_b (w_b = 1
               without weights; kernels/losses.py lists each l_b), e.g.
               cross_entropy       l_b = -sum_k q_bk log P[b, k],
                                   q = (1 - e) onehot(y) + e / K   (label smoothing e)
               squared_error       l_b = 0.5 * mean_t (Z[b, t] - Y[b, t])^2  (linear output)
               distillation        (1 - a) cross_entropy + a T^2 KL(q || softmax(Z / T)),
                                   q: a teacher's soft targets (distillation_loss_and_grad)
    backward:  dZ_L = dLoss/dlogits;  dW_l = A_l^T dZ_l;  db_l = sum_b dZ_l;
               dZ_{l-1} = (dZ_l W_l^T) * S_l * act'(Z_l), act' read from act(Z_l),
               or from Z_l for GELU and SiLU (derivative_input)
    update:    g = dW + weight_decay * W (weights only; adamw decays the weights directly),
               then the optimizer (see `update`) at the step's scheduled learning rate.

The random draws (dropout masks, shifts, flips, deformations) are the kernels' own
counter-based numbers, replayed by `uniform_array`; the learning-rate schedule is the
kernels' own function.
"""
from __future__ import annotations

import numpy as np

from .kernels import random as kernel_random
from .kernels.interface import (BATCH_NORM_MOMENTUM, LEAKY_SLOPE, NEEDS_PRE_ACTIVATIONS,
                                NORM_EPS, SCHEDULES, has_skip)
from .kernels.schedules import scheduled_lr

# ----------------------------------------------------------------------------- activations
# As in the kernels, each derivative reads what the backward pass keeps: the activation's
# OUTPUT a, or for GELU and SiLU (NEEDS_PRE_ACTIVATIONS: their output does not tell z) the
# pre-activation z itself. leaky_slope: LeakyReLU's (the others ignore it).


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z) = (1 + erf(z / sqrt 2)) / 2, as erfc(-z / sqrt 2) / 2 (no cancellation for
    z < 0)."""
    from scipy.special import erfc

    return 0.5 * erfc(-z / np.sqrt(2.0))


def activate(name: str, z: np.ndarray, leaky_slope: float = LEAKY_SLOPE) -> np.ndarray:
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "ReLU":
        return np.maximum(z, 0)
    if name == "GELU":  # the exact (erf) form
        return z * normal_cdf(z)
    if name == "SiLU":
        return z / (1.0 + np.exp(-z))
    if name == "LeakyReLU":
        return np.where(z > 0, z, leaky_slope * z)
    raise ValueError(name)


def derivative_input(name: str, z: np.ndarray, leaky_slope: float = LEAKY_SLOPE) -> np.ndarray:
    """What activation_derivative reads for pre-activations z: z itself for GELU and SiLU,
    else the output act(z)."""
    return z if name in NEEDS_PRE_ACTIVATIONS else activate(name, z, leaky_slope)


def activation_derivative(name: str, kept: np.ndarray,
                          leaky_slope: float = LEAKY_SLOPE) -> np.ndarray:
    """act'(z) from kept = derivative_input(name, z): the output a, or z (GELU, SiLU)."""
    if name == "identity":
        return np.ones_like(kept)
    if name == "sigmoid":
        return kept * (1 - kept)
    if name == "tanh":
        return 1 - kept * kept
    if name == "ReLU":
        return (kept > 0).astype(kept.dtype)
    if name == "GELU":  # Phi(z) + z phi(z)
        return normal_cdf(kept) + kept * np.exp(-0.5 * kept * kept) / np.sqrt(2 * np.pi)
    if name == "SiLU":  # s (1 + z (1 - s)), s = sigmoid(z)
        s = 1.0 / (1.0 + np.exp(-kept))
        return s * (1 + kept * (1 - s))
    if name == "LeakyReLU":  # a > 0 exactly where z > 0 (the slope is >= 0)
        return np.where(kept > 0, 1.0, leaky_slope).astype(kept.dtype)
    raise ValueError(name)


# ----------------------------------------------------------------------------- losses


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def row_losses(name: str, logits: np.ndarray, y: np.ndarray, smoothing: float = 0.0,
               delta: float = 1.0):
    """(each row's loss l_b (B,), dl_b/dlogits (B, K)). y: integer labels (B,) for the
    softmax losses, float targets (B, T) for the others; smoothing: cross-entropy's label
    smoothing; delta: huber's."""
    batch, width = logits.shape
    if name in ("cross_entropy", "mean_squared_error"):
        probs = softmax(logits)
        onehot = np.zeros_like(probs)
        onehot[np.arange(batch), y] = 1
        if name == "cross_entropy":
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            target = (1 - smoothing) * onehot + smoothing / width
            return -(target * log_probs).sum(axis=1), probs - target
        diff = probs - onehot
        grad_probs = 2 * diff
        # back through softmax: dz_j = p_j * (g_j - sum_k g_k p_k)
        return (diff * diff).sum(axis=1), probs * (
            grad_probs - (grad_probs * probs).sum(axis=1, keepdims=True))
    y = np.asarray(y, dtype=np.float64).reshape(batch, -1)  # one target: a column
    residual = logits - y
    if name == "squared_error":
        return 0.5 * (residual ** 2).mean(axis=1), residual / width
    if name == "absolute_error":
        return np.abs(residual).mean(axis=1), np.sign(residual) / width
    if name == "huber":
        small = np.abs(residual) <= delta
        element = np.where(small, 0.5 * residual ** 2, delta * (np.abs(residual) - delta / 2))
        slope = np.where(small, residual, delta * np.sign(residual))
        return element.mean(axis=1), slope / width
    if name == "poisson":  # log link: mu = exp(z); y log(y / mu) = 0 at y = 0
        mu = np.exp(logits)
        y_log = np.where(y > 0, y * (np.log(np.where(y > 0, y, 1.0)) - logits), 0.0)
        return (y_log - y + mu).sum(axis=1), mu - y
    if name == "binary_cross_entropy":  # softplus(z) - y z
        softplus = np.maximum(logits, 0) + np.log1p(np.exp(-np.abs(logits)))
        return (softplus - y * logits).sum(axis=1), 1 / (1 + np.exp(-logits)) - y
    raise ValueError(name)


def loss_and_grad(name: str, logits: np.ndarray, y: np.ndarray, smoothing: float = 0.0,
                  weights=None, delta: float = 1.0):
    """(the batch's loss: the weighted mean of its rows' losses, dLoss/dlogits); weights
    (B,) or None (every row 1). y: integer labels, or float targets (B, T)."""
    losses, grads = row_losses(name, logits, y, smoothing, delta)
    w = np.ones(len(logits)) if weights is None else np.asarray(weights, dtype=np.float64)
    return (w * losses).sum() / w.sum(), grads * (w / w.sum())[:, None]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def distillation_loss_and_grad(logits: np.ndarray, labels: np.ndarray, soft: np.ndarray,
                               temperature: float, weight: float, smoothing: float = 0.0,
                               weights=None):
    """Knowledge distillation (Hinton et al. 2015): (the batch's loss, dLoss/dlogits) of
        (1 - a) cross_entropy(labels, softmax(z)) + a T^2 KL(q || softmax(z / T))
    per row, weighted as every loss; soft: the teacher's soft targets q (B, K), rows summing
    to 1; T: temperature; a: weight. The gradient of the second term is
    a T (softmax(z / T) - q): T^2 keeps its size comparable to the first term's at any T."""
    hard_loss, hard_grad = loss_and_grad("cross_entropy", logits, labels, smoothing, weights)
    log_s = log_softmax(logits / temperature)
    q = np.asarray(soft, dtype=np.float64)
    log_q = np.log(np.where(q > 0, q, 1.0))  # q log q = 0 at q = 0
    kl = (q * (log_q - log_s)).sum(axis=1)
    w = np.ones(len(logits)) if weights is None else np.asarray(weights, dtype=np.float64)
    share = w / w.sum()
    soft_loss = temperature ** 2 * (share * kl).sum()
    soft_grad = temperature * (np.exp(log_s) - q) * share[:, None]
    return ((1 - weight) * hard_loss + weight * soft_loss,
            (1 - weight) * hard_grad + weight * soft_grad)


OUTPUT_OF = {"cross_entropy": "softmax", "mean_squared_error": "softmax",
             "binary_cross_entropy": "sigmoid", "poisson": "exp"}  # else identity


def output_values(loss: str, logits: np.ndarray) -> np.ndarray:
    """The output layer's values at inference: softmax probabilities, sigmoid ones, the
    Poisson mean exp(z), or the linear output itself."""
    kind = OUTPUT_OF.get(loss, "identity")
    if kind == "softmax":
        return softmax(logits)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-logits))
    return np.exp(logits) if kind == "exp" else logits


# ----------------------------------------------------------------------------- the network


# A hidden layer's tuple says its normalisation (--norm, kernels/norm.py): (W, b) none,
# (W, b, gamma, beta) LayerNorm, (W, b, gamma, beta, running mean, running variance)
# BatchNorm. LayerNorm takes the statistics of each row (axis 1), BatchNorm those of each
# unit over the batch (axis 0) in training and its running ones in evaluation.
NORM_OF_LENGTH = {2: "none", 4: "layer", 6: "batch"}


def normalise(layer, z: np.ndarray, training: bool):
    """(x, 1 / std) of a normed layer's z = a_in W + b; x = (z - mean) / sqrt(var + eps)."""
    if NORM_OF_LENGTH[len(layer)] == "batch" and not training:
        inv_std = 1.0 / np.sqrt(layer[5] + NORM_EPS)
        return (z - layer[4]) * inv_std, inv_std
    axis = 1 if NORM_OF_LENGTH[len(layer)] == "layer" else 0
    centred = z - z.mean(axis=axis, keepdims=True)
    inv_std = 1.0 / np.sqrt((centred ** 2).mean(axis=axis, keepdims=True) + NORM_EPS)
    return centred * inv_std, inv_std


def normalise_backward(layer, dy, x, inv_std):
    """(dLoss/dz, the gradients of the layer's vectors after b) of y = gamma x + beta, x =
    normalise(layer, z, training=True), from dy = dLoss/dy; BatchNorm's running statistics
    get none (zeros)."""
    axis = 1 if NORM_OF_LENGTH[len(layer)] == "layer" else 0
    g = dy * layer[2]
    dz = inv_std * (g - g.mean(axis=axis, keepdims=True)
                    - x * (g * x).mean(axis=axis, keepdims=True))
    running = (np.zeros_like(layer[4]), np.zeros_like(layer[5])) if len(layer) == 6 else ()
    return dz, ((dy * x).sum(axis=0), dy.sum(axis=0)) + running


def pre_activation(layer, a_in, training: bool = False, batch_stats=None):
    """A hidden layer's Z: a_in W + b, or with a normalisation gamma * normalise(a_in W + b)
    + beta. batch_stats: a list that receives (layer, the batch's mean, its variance) of each
    BatchNorm layer in training (to move its running statistics), or None."""
    z = a_in @ layer[0] + layer[1]
    if len(layer) == 2:
        return z
    if len(layer) == 6 and training and batch_stats is not None:
        batch_stats.append((layer, z.mean(axis=0), z.var(axis=0)))
    return layer[2] * normalise(layer, z, training)[0] + layer[3]


def move_running_statistics(batch_stats, rows: int) -> None:
    """BatchNorm's running mean and variance, in place, a tenth of the way to the batch's
    (the unbiased variance; kernels/norm.py)."""
    unbiased = rows / (rows - 1) if rows > 1 else 1.0
    for layer, mean, variance in batch_stats:
        layer[4][...] = (1 - BATCH_NORM_MOMENTUM) * layer[4] + BATCH_NORM_MOMENTUM * mean
        layer[5][...] = ((1 - BATCH_NORM_MOMENTUM) * layer[5]
                         + BATCH_NORM_MOMENTUM * variance * unbiased)


def skips(layers, residual: bool) -> list:
    """For each dense layer l: whether its output adds its input (--residual): a hidden layer
    whose input is a hidden layer of its own width (the kernels' rule, has_skip)."""
    sizes = np.array([layers[0][0].shape[0]] + [layer[0].shape[1] for layer in layers],
                     dtype=np.int64)
    return [bool(has_skip(sizes, l, int(residual))) for l in range(len(layers))]


def forward(layers, x: np.ndarray, activation: str, scales=None,
            leaky_slope: float = LEAKY_SLOPE, residual: bool = False, training: bool = False,
            batch_stats=None):
    """(all activations [A_0 = x, A_1, ..., A_{L-1}], the hidden layers' pre-activations
    [Z_1, ..., Z_{L-1}], the output logits). scales: the dropout factors S_1 .. S_{L-1} of
    the hidden layers (None: no dropout). residual: A_{l+1} = act(Z_{l+1}) S_{l+1} + A_l
    where skips() says. layers: (W, b) pairs, or with a normalisation (NORM_OF_LENGTH);
    training: BatchNorm with the batch's statistics (batch_stats: pre_activation's)."""
    activations, pre_activations = [x], []
    skip = skips(layers, residual)
    for l, layer in enumerate(layers[:-1]):
        z = pre_activation(layer, activations[-1], training, batch_stats)
        a = activate(activation, z, leaky_slope)
        pre_activations.append(z)
        a = a if scales is None else a * scales[l]
        activations.append(a + activations[-1] if skip[l] else a)
    weights, bias = layers[-1]
    return activations, pre_activations, activations[-1] @ weights + bias


def backward(layers, activations, pre_activations, dlogits: np.ndarray, activation: str,
             scales=None, leaky_slope: float = LEAKY_SLOPE, residual: bool = False):
    """[(dW_0, db_0), ...] of the data loss (training, batch statistics); a normed layer's
    tuple also has its vectors' gradients (normalise_backward)."""
    grads = [None] * len(layers)
    skip = skips(layers, residual)
    dz = dlogits
    da_above = None  # dLoss/dA_{l+1}, where A_{l+1} adds A_l
    norm_grads = ()  # (dgamma, dbeta) of layer l, found at layer l + 1
    for l in range(len(layers) - 1, -1, -1):
        weights = layers[l][0]
        grads[l] = (activations[l].T @ dz, dz.sum(axis=0)) + norm_grads
        if l > 0:
            da = dz @ weights.T
            if skip[l]:  # A_{l+1} = act(Z_{l+1}) S + A_l: its gradient reaches A_l as it is
                da = da + da_above
            da_above = da
            if scales is not None:  # A_l = act(Z_l) * S_l (+ A_{l-1})
                da = da * scales[l - 1]
            # what the derivative reads, as the kernel keeps it: Z_l (GELU, SiLU), else
            # act(Z_l), which is A_l itself without dropout and skips
            if activation in NEEDS_PRE_ACTIVATIONS:
                kept = pre_activations[l - 1]
            elif scales is None and not residual:
                kept = activations[l]
            else:
                kept = activate(activation, pre_activations[l - 1], leaky_slope)
            dz = da * activation_derivative(activation, kept, leaky_slope)
            below = layers[l - 1]
            if len(below) > 2:  # dz is dLoss/dY of the normalisation's output: through it
                x, inv_std = normalise(below, activations[l - 1] @ below[0] + below[1], True)
                dz, norm_grads = normalise_backward(below, dz, x, inv_std)
    return grads


def gradients(layers, x, labels, activation: str, loss: str, scales=None, smoothing=0.0,
              weights=None, delta=1.0, leaky_slope=LEAKY_SLOPE, residual=False,
              distill=None, batch_stats=None):
    """(loss, [(dW, db), ...], logits) for one batch, in training (BatchNorm with the batch's
    statistics, which batch_stats receives unless None); labels: integer labels or float
    targets (B, T); weights: per row, or None; distill: (the batch's soft targets (B, K),
    temperature, weight) to learn from a teacher too (cross_entropy only), or None."""
    activations, pre_activations, logits = forward(layers, x, activation, scales, leaky_slope,
                                                   residual, True, batch_stats)
    if distill is not None:
        assert loss == "cross_entropy", loss
        batch_loss, dlogits = distillation_loss_and_grad(logits, labels, *distill, smoothing,
                                                         weights)
    else:
        batch_loss, dlogits = loss_and_grad(loss, logits, labels, smoothing, weights, delta)
    grads = backward(layers, activations, pre_activations, dlogits, activation, scales,
                     leaky_slope, residual)
    return batch_loss, grads, logits


# ----------------------------------------------------------------------------- randomness
# The kernels' counter-based draws (kernels/random.py), the same numbers in array form.


def uniform_array(seed, step, stream, rows, units):
    """uniform(seed, step, stream, row, unit) for every row in `rows` (a column) and unit
    in `units` (a row), as float64 in [0, 1)."""
    with np.errstate(over="ignore"):
        u64 = np.uint64
        golden = kernel_random.GOLDEN

        def mix(z):
            z = (z ^ (z >> u64(30))) * kernel_random.MIX1
            z = (z ^ (z >> u64(27))) * kernel_random.MIX2
            return z ^ (z >> u64(31))

        z = mix(u64(seed) * golden + u64(step))
        z = mix(z + u64(stream) * golden)
        z = mix(z + np.asarray(rows, dtype=u64) * golden)
        z = mix(z + np.asarray(units, dtype=u64) * golden)
        return (z >> u64(11)).astype(np.float64) * kernel_random.TO_UNIT


def dropout_scales(p, seed, step, stream, rows, width):
    """S = mask / (1 - p) for `rows` (their places in the batch) x `width` units."""
    keep = uniform_array(seed, step, stream, np.asarray(rows)[:, None], np.arange(width)[None, :])
    return np.where(keep >= p, 1.0 / (1.0 - p), 0.0)


def augment(x, rows, seed, step, shift, flip, image_width):
    """Each example of x (B, pixels) shifted by up to `shift` pixels each way (zero-filled)
    and mirrored with probability 1/2 (flip), drawn per example like the kernel does."""
    height = x.shape[1] // image_width
    images = x.reshape(len(x), height, image_width)
    out = np.zeros_like(images)
    for i, row in enumerate(rows):
        dx = dy = 0
        if shift > 0:
            span = 2 * shift + 1
            dx = int(uniform_array(seed, step, kernel_random.STREAM_SHIFT_X, row, 0) * span) - shift
            dy = int(uniform_array(seed, step, kernel_random.STREAM_SHIFT_Y, row, 0) * span) - shift
        image = images[i]
        if flip and uniform_array(seed, step, kernel_random.STREAM_FLIP, row, 0) < 0.5:
            image = image[:, ::-1]
        # out[y, x] = image[y - dy, x - dx] where that is inside the image
        ys, xs = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), image_width + min(dx, 0))
        from_ys = slice(max(-dy, 0), height + min(-dy, 0))
        from_xs = slice(max(-dx, 0), image_width + min(-dx, 0))
        out[i][ys, xs] = image[from_ys, from_xs]
    return out.reshape(x.shape)


def inverse_affine(rotation, factor, shear) -> np.ndarray:
    """M = (1 / k) [[1, -tan s], [0, 1]] [[cos r, sin r], [-sin r, cos r]]: the inverse of
    scaling by k, shearing (x += tan(s) y) and rotating by r (radians), in that order."""
    unshear = np.array([[1.0, -np.tan(shear)], [0.0, 1.0]])
    unrotate = np.array([[np.cos(rotation), np.sin(rotation)],
                         [-np.sin(rotation), np.cos(rotation)]])
    return unshear @ unrotate / factor


def drawn_affine(seed, step, row, rotate, scale, shear) -> np.ndarray:
    """M of one example: r, s uniform in [-rotate, rotate], [-shear, shear] degrees, k in
    [1 - scale, 1 + scale], each from its own stream (nothing drawn for a setting at 0)."""
    def symmetric(stream):
        return 2.0 * float(uniform_array(seed, step, stream, row, 0)) - 1.0

    rotation = np.radians(rotate) * symmetric(kernel_random.STREAM_ROTATE) if rotate else 0.0
    factor = 1.0 + scale * symmetric(kernel_random.STREAM_SCALE) if scale else 1.0
    shear_angle = np.radians(shear) * symmetric(kernel_random.STREAM_SHEAR) if shear else 0.0
    return inverse_affine(rotation, factor, shear_angle)


def lattice_weights(n, sigma) -> np.ndarray:
    """(G, n): the elastic field's lattice along an axis of n pixels: points every
    h = max(1, sigma) pixels about the axis's middle, reaching 2 sigma beyond its ends, and
    their weights sqrt(h) N(x; c_j, sigma^2) at the pixels x."""
    spacing = max(1.0, sigma)
    half = int(np.ceil(((n - 1) / 2 + 2.0 * sigma) / spacing))
    centres = (n - 1) / 2 + (np.arange(2 * half + 1) - half) * spacing
    d = (np.arange(n)[None, :] - centres[:, None]) / sigma
    return np.sqrt(spacing) / (np.sqrt(2 * np.pi) * sigma) * np.exp(-0.5 * d * d)


def elastic_field(seed, step, row, alpha, sigma, height, width) -> np.ndarray:
    """(2, H, W): the displacements (e_x, e_y) of one example, Simard et al.'s smoothed
    uniform noise with the noise on the lattice: alpha * G_y^T N_a G_x, N_a in [-1, 1)."""
    rows, cols = lattice_weights(height, sigma), lattice_weights(width, sigma)
    units = np.arange(len(rows) * len(cols)).reshape(len(rows), len(cols))
    field = np.empty((2, height, width))
    for axis in range(2):
        noise = 2.0 * uniform_array(seed, step, kernel_random.STREAM_ELASTIC_X + axis, row,
                                    units) - 1.0
        field[axis] = alpha * (rows.T @ noise @ cols)
    return field


def bilinear(image, qx, qy) -> np.ndarray:
    """image (H, W) at the points (qx, qy), bilinearly, zero outside."""
    height, width = image.shape
    inside = (qx > -1) & (qx < width) & (qy > -1) & (qy < height)
    qx, qy = np.where(inside, qx, -0.5), np.where(inside, qy, -0.5)
    x0, y0 = np.floor(qx), np.floor(qy)
    fx, fy = qx - x0, qy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    padded = np.pad(image, 1)  # padded[y + 1, x + 1] = image[y, x], zero around it
    value = sum(wx * wy * padded[y0 + 1 + oy, x0 + 1 + ox]
                for ox, wx in ((0, 1 - fx), (1, fx)) for oy, wy in ((0, 1 - fy), (1, fy)))
    return np.where(inside, value, 0.0)


def deform(x, rows, seed, step, image_width, rotate=0.0, scale=0.0, shear=0.0, elastic=0.0,
           elastic_sigma=4.0):
    """Each example of x (B, pixels) deformed: D(p) = bilinear(image, c + M (p - c) + e(p)),
    c the image's centre, M drawn_affine's, e elastic_field's (when elastic > 0); the
    kernels' kernels/deform.py explains the draws."""
    height = x.shape[1] // image_width
    images = x.reshape(len(x), height, image_width)
    ys, xs = np.mgrid[0:height, 0:image_width].astype(np.float64)
    cx, cy = (image_width - 1) / 2, (height - 1) / 2
    out = np.empty_like(images)
    for i, row in enumerate(rows):
        m = drawn_affine(seed, step, row, rotate, scale, shear)
        qx = cx + m[0, 0] * (xs - cx) + m[0, 1] * (ys - cy)
        qy = cy + m[1, 0] * (xs - cx) + m[1, 1] * (ys - cy)
        if elastic > 0:
            field = elastic_field(seed, step, row, elastic, elastic_sigma, height, image_width)
            qx, qy = qx + field[0], qy + field[1]
        out[i] = bilinear(images[i], qx, qy)
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------- optimizers


class Optimizer:
    """Holds the hyperparameters, the step count t and two state arrays per parameter.

    hyper: a mapping with the names of kernels.interface.HYPERPARAMETERS (a TrainConfig's
    field names): learning_rate, momentum, beta, beta1, beta2, epsilon, weight_decay."""

    def __init__(self, name, layers, hyper, schedule="constant"):
        self.name = name
        self.hyper = dict(hyper)
        self.schedule = schedule
        self.t = 0
        self.state = [[(np.zeros_like(p), np.zeros_like(p)) for p in pair] for pair in layers]

    @property
    def lr(self) -> float:
        """The learning rate of step t (the schedule's, kernels/schedules.py)."""
        h = self.hyper
        return scheduled_lr(h["learning_rate"], SCHEDULES.index(self.schedule), float(self.t),
                            float(h.get("total_steps", 0)), float(h.get("warmup_steps", 0)))

    def step(self, layers, grads):
        """One update of every W and b (and LayerNorm's gamma and beta) in place; weight decay
        on W only."""
        self.t += 1
        decay = self.hyper["weight_decay"]
        for layer, layer_grads, state in zip(layers, grads, self.state):
            weights, dw = layer[0], layer_grads[0]
            if self.name == "adamw":  # decoupled: the decay is not part of the gradient
                self.update(weights, dw, state[0], decay)
            else:
                self.update(weights, dw + decay * weights, state[0])
            for vector, g, vector_state in zip(layer[1:], layer_grads[1:], state[1:]):
                self.update(vector, g, vector_state)

    def update(self, param, g, state, decoupled_decay=0.0):
        s1, s2 = state  # u / v / s / (m1, m2), by optimizer
        h, t = self.hyper, self.t
        lr, eps = self.lr, h["epsilon"]
        if self.name == "sgd":
            param -= lr * g
        elif self.name == "momentum":
            s1[...] = h["momentum"] * s1 + lr * g
            param -= s1
        elif self.name == "nag":
            s1[...] = h["momentum"] * s1 + g
            param -= lr * (g + h["momentum"] * s1)
        elif self.name == "rmsprop":
            s1[...] = h["beta"] * s1 + (1 - h["beta"]) * g * g
            param -= lr * g / (np.sqrt(s1) + eps)
        elif self.name in ("adam", "nadam", "adamw"):
            b1, b2 = h["beta1"], h["beta2"]
            s1[...] = b1 * s1 + (1 - b1) * g
            s2[...] = b2 * s2 + (1 - b2) * g * g
            m_hat = s1 / (1 - b1 ** t)
            v_hat = s2 / (1 - b2 ** t)
            if self.name == "nadam":
                m_hat = b1 * m_hat + (1 - b1) * g / (1 - b1 ** t)
            param -= lr * (m_hat / (np.sqrt(v_hat) + eps) + decoupled_decay * param)
        else:
            raise ValueError(self.name)


# ----------------------------------------------------------------------------- an epoch


def train_epoch(layers, optimizer: Optimizer, x, labels, order, batch_size, activation, loss,
                regime=None, weights=None, soft_targets=None):
    """One pass over x[order] in batches; returns (mean batch loss, accuracy: the weighted
    share of rows predicted right, the class or every label; 0 for regression). labels:
    integer labels (N,) or float targets (N, T); weights: (N,) or None. regime: the
    training additions, a mapping with dropout, input_dropout, label_smoothing, seed, shift,
    flip, image_width, huber_delta, leaky_slope, residual, the deformations (rotate,
    scale, shear, elastic, elastic_sigma), and temperature and distill_weight (None: none of
    them). soft_targets: a teacher's (N, K), learnt from with regime's distill_weight at its
    temperature (kernels/losses.py), or None."""
    r = dict(dropout=0.0, input_dropout=0.0, label_smoothing=0.0, seed=0, shift=0, flip=0,
             image_width=0, huber_delta=1.0, leaky_slope=LEAKY_SLOPE, residual=False,
             rotate=0.0, scale=0.0, shear=0.0, elastic=0.0, elastic_sigma=4.0,
             temperature=4.0, distill_weight=0.0) | dict(regime or {})
    deformations = {name: r[name] for name in ("rotate", "scale", "shear", "elastic",
                                               "elastic_sigma")}
    w_all = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    loss_sum, correct, batches = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        step = optimizer.t + 1  # the random draws of this batch are keyed by its step
        places = np.arange(len(rows))  # each example's place in the batch
        x_batch = x[rows]
        if any(deformations[name] > 0 for name in ("rotate", "scale", "shear", "elastic")):
            x_batch = deform(x_batch, places, r["seed"], step, r["image_width"], **deformations)
        if r["shift"] > 0 or r["flip"]:
            x_batch = augment(x_batch, places, r["seed"], step, r["shift"], r["flip"],
                              r["image_width"])
        if r["input_dropout"] > 0:
            x_batch = x_batch * dropout_scales(r["input_dropout"], r["seed"], step,
                                               kernel_random.STREAM_INPUT_DROPOUT, places,
                                               x_batch.shape[1])
        scales = None
        if r["dropout"] > 0:
            scales = [dropout_scales(r["dropout"], r["seed"], step,
                                     kernel_random.STREAM_DROPOUT + l, places, layer[0].shape[1])
                      for l, layer in enumerate(layers[:-1])]
        distill = None
        if soft_targets is not None and r["distill_weight"] > 0:
            distill = (soft_targets[rows], r["temperature"], r["distill_weight"])
        batch_stats = []
        batch_loss, grads, logits = gradients(layers, x_batch, labels[rows], activation, loss,
                                              scales, r["label_smoothing"], w_all[rows],
                                              r["huber_delta"], r["leaky_slope"],
                                              r["residual"], distill, batch_stats)
        move_running_statistics(batch_stats, len(rows))
        optimizer.step(layers, grads)
        loss_sum += batch_loss
        correct += (w_all[rows] * right_rows(loss, logits, labels[rows])).sum()
        batches += 1
    return loss_sum / batches, correct / w_all[order].sum()


def right_rows(loss: str, logits, y) -> np.ndarray:
    """1.0 for each row predicted right (its class; every one of its labels), else 0; all 0
    for regression."""
    kind = OUTPUT_OF.get(loss, "identity")
    if kind == "softmax":
        return (logits.argmax(axis=1) == y).astype(np.float64)
    if kind == "sigmoid":
        return ((logits > 0) == (y > 0.5)).all(axis=1).astype(np.float64)
    return np.zeros(len(logits))


def predict(layers, x, activation, loss="cross_entropy", leaky_slope=LEAKY_SLOPE,
            residual=False):
    """(the output layer's values, the argmax of each row's logits) of every row: the twin
    of the compiled forward pass of inference (kernels.epoch.infer)."""
    _, _, logits = forward(layers, x, activation, leaky_slope=leaky_slope, residual=residual)
    return output_values(loss, logits), logits.argmax(axis=1)


def evaluate(layers, x, labels, activation, loss, weights=None, delta=1.0,
             leaky_slope=LEAKY_SLOPE, residual=False):
    """(loss, accuracy, argmax of each row's logits) over a whole set, weighted by
    weights (or not); labels: integer labels or float targets (N, T)."""
    _, _, logits = forward(layers, x, activation, leaky_slope=leaky_slope, residual=residual)
    mean_loss, _ = loss_and_grad(loss, logits, labels, 0.0, weights, delta)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    accuracy = (w * right_rows(loss, logits, labels)).sum() / w.sum()
    return float(mean_loss), float(accuracy), logits.argmax(axis=1)


# ----------------------------------------------------------------------------- table columns
# The twins of kernels/columns.py, the preprocessing's passes over a number column.

def column_moments(values, chosen):
    """(count, mean, sum of squared deviations, a chosen cell missing, an infinite cell)
    of the filled cells of values[chosen], in float64."""
    values = np.asarray(values, dtype=np.float64)
    picked = values[chosen]
    filled = picked[~np.isnan(picked)]
    mean = filled.mean() if len(filled) else 0.0
    with np.errstate(invalid="ignore"):  # an infinity's deviation
        spread = float(np.square(filled - mean).sum())
    return (len(filled), float(mean), spread, bool(np.isnan(picked).any()),
            bool(np.isinf(values).any()))


def standardise_column(out, rows, j, values, mean, scale, fill, indicator):
    """out[rows, j] = (values - mean) / scale in out's dtype, a missing value taken as fill
    and marked with 1 in out[rows, indicator] (indicator >= 0); returns the first i whose
    value is infinite, or -1; values of out's dtype."""
    values = np.asarray(values)
    missing = np.isnan(values)
    if indicator >= 0:
        out[rows[missing], indicator] = 1
    out[rows, j] = (np.where(missing, fill, values) - mean) / scale
    infinite = np.flatnonzero(np.isinf(values))
    return int(infinite[0]) if len(infinite) else -1
