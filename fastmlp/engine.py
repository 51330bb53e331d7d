"""The training engine: drives the compiled kernels (fastmlp/kernels/) from Python.

    TrainState                  parameters, optimizer state, gradient buffer, step count
    run_epoch(state, ...)       one compiled epoch over the training pixels
    score_params(...)           loss and the task's figures of a parameter buffer on a set
    evaluate_params(...)        loss, accuracy and predicted classes (a classifier's view)
    predict_outputs(...)        output-layer values (probabilities, numbers) and argmaxes
    output_loss(...)            the loss of given outputs (an ensemble's averaged ones)
    warm_up(dtype)              compile (or load from the disk cache) every kernel
    thread_limits(threads)      Numba and BLAS thread counts for a block
    single_threaded_blas(...)   BLAS on one thread while Numba's threads split the work

Everything that runs a kernel goes through here: the trainer, inference, the estimator,
benchmarks and sweeps. Settings reach the kernels only as a validated TrainConfig, turned
into their `codes` and `hyper` arrays by kernels.interface.kernel_inputs.

An ensemble (--ensemble K) is a (K, P) parameter array, one row per member: score_params,
evaluate_params and predict_outputs run the inference pass once per member and average the
members' outputs (softmax or sigmoid probabilities, values) in float64; its argmaxes are
those of the average, its loss that of the averaged outputs (output_loss, in NumPy). A flat
(P,) buffer is one network, exactly as before.
"""
from __future__ import annotations

import contextlib
import functools
import time

import numpy as np

from .config import TrainConfig
from .kernels.interface import BUFFERS, kernel_inputs
from .metrics import task_metrics
from .model import Layout, init_params

NO_LABELS = np.empty(0, dtype=np.int64)
NO_TARGETS = np.empty((0, 0), dtype=np.float64)
NO_WEIGHTS = np.empty(0, dtype=np.float64)


def kernel_targets(y, weights=None, classes=None) -> tuple:
    """(labels, targets, weights) as the kernels take them from what a set is learnt against:
    class indices (N,) give labels, targets ((N,) or (N, T) numbers, 0/1 labels) give
    targets; weights (N,) or None. The unused arrays are empty. classes: whether y holds
    class indices (the config's task says; None: integers of one dimension do)."""
    w = NO_WEIGHTS if weights is None else np.require(weights, np.float64, ["C"])
    if y is None:
        return NO_LABELS, NO_TARGETS, w
    y = np.asarray(y)
    if classes is None:
        classes = y.ndim == 1 and y.dtype.kind in "iu"
    if classes:
        return np.require(y, np.int64, ["C"]), NO_TARGETS, w
    return NO_LABELS, np.require(y.reshape(len(y), -1), np.float64, ["C"]), w


class TrainState:
    """Everything that changes during training: parameters, optimizer state, gradient
    buffer (the rows of one (4, P) array, the kernels' `buffers` bundle) and the step count."""

    def __init__(self, params: np.ndarray, state1=None, state2=None, step: int = 0):
        self.buffers = np.zeros((len(BUFFERS), params.size), dtype=params.dtype)
        self.buffers[0] = params
        for row, given in ((1, state1), (2, state2)):
            if given is not None:
                self.buffers[row] = given
        self.step = step
        self.lr = None  # the learning rate of the last step taken (schedules change it)

    @classmethod
    def fresh(cls, params: np.ndarray) -> "TrainState":
        return cls(params)

    params = property(lambda self: self.buffers[0])
    state1 = property(lambda self: self.buffers[1])
    state2 = property(lambda self: self.buffers[2])
    grads = property(lambda self: self.buffers[3])


@contextlib.contextmanager
def thread_limits(threads):
    """Use `threads` Numba and BLAS threads inside the block (all cores when None)."""
    if threads is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    load_kernel_blas()  # else the BLAS the kernels call is loaded later, outside the limit

    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)


def load_kernel_blas() -> None:
    """Load the BLAS library that Numba's np.dot calls (SciPy's OpenBLAS, not NumPy's), so
    that threadpoolctl sees it and can limit its threads. Loaded lazily at the first
    kernel call, it would escape every limit set before it: `--threads 1` would still run
    two-threaded GEMMs, and a run would round differently from the same run repeated in
    one process.

    Numba reaches that BLAS through the module scipy.linalg.cython_blas. It is loaded here
    on its own, from its file: `import scipy.linalg.cython_blas` would first run
    scipy.linalg's __init__, 0.2-0.3 s of imports that training never uses, a third of
    `fastmlp train`'s start-up. Numba (and anything imported later) finds the module in
    sys.modules; `import scipy.linalg` still works as usual afterwards."""
    import sys

    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return
    try:
        import importlib.machinery
        import importlib.util
        import os

        folder = os.path.join(importlib.util.find_spec("scipy").submodule_search_locations[0],
                              "linalg")
        path = next(candidate for suffix in importlib.machinery.EXTENSION_SUFFIXES
                    if os.path.exists(candidate := os.path.join(folder, "cython_blas" + suffix)))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # an extension module: this loads it
        spec.loader.exec_module(module)
        sys.modules[name] = module
    except (ImportError, OSError, StopIteration, AttributeError, TypeError):
        import scipy.linalg.cython_blas  # noqa: F401  (another SciPy layout: the usual way)


@functools.cache
def _thread_pools():
    """threadpoolctl's controller of the libraries loaded by its first call (after
    load_kernel_blas), made once per process."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_threaded_blas(wanted: bool):
    """A block in which BLAS runs on one thread when `wanted` (the kernels' own threads split
    the work), else a block that changes nothing. The libraries are looked up once per
    process, after loading the kernels' BLAS: a fresh `threadpool_limits` reads
    /proc/self/maps at every call, 4 ms, more than a partial_fit on a batch takes."""
    load_kernel_blas()
    if not wanted:
        return contextlib.nullcontext()
    return _thread_pools().limit(limits=1, user_api="blas")


def warm_up(dtype="float32") -> float:
    """Compile (or load from the on-disk cache) every kernel; returns the seconds."""
    start = time.perf_counter()
    layout = Layout((4, 3, 2))
    params = init_params(layout, "Xavier", np.random.default_rng(0), np.dtype(dtype))
    config = TrainConfig(dtype=str(np.dtype(dtype))).validated()
    pixels = np.zeros((2, 4), dtype=np.uint8)
    labels = np.zeros(2, dtype=np.int64)
    run_epoch(TrainState.fresh(params), layout, pixels, labels, np.arange(2), 2, config)
    evaluate_params(params, layout, pixels.astype(dtype), labels, config)
    predict_outputs(params, layout, pixels.astype(dtype), config)
    return time.perf_counter() - start


def run_epoch(state: TrainState, layout: Layout, pixels, y, order, batch_size,
              config: TrainConfig, progress=None, shards=None, image_width: int = 0,
              weights=None, soft_targets=None):
    """One compiled epoch over pixels[order] (uint8 images, scaled to [0, 1] in the kernel,
    or float features); returns (mean batch loss, accuracy, batches run). y: class indices
    or float targets (kernel_targets), weights: per row or None; accuracy is the weighted
    share of rows predicted right (0 for regression). config: a validated TrainConfig (the
    choices, the hyperparameters, the schedule's length in epochs); image_width: pixels per
    image row, for --augment; soft_targets: a teacher's (N, K) for the rows of pixels, with
    --teacher (None without: the labels alone).

    shards: how many threads split each batch by rows (default: Numba's thread count). With
    more than one, BLAS runs single-threaded inside them: on these small matrices a thread
    per shard beats threading every GEMM."""
    import numba

    from .kernels.epoch import train_epoch

    shards = shards or numba.get_num_threads()
    if progress is None:
        progress = np.zeros(1, dtype=np.int64)
    batch_size = min(batch_size, len(order))  # the same batches; buffers no bigger than the data
    codes, hyper = kernel_inputs(config, -(-len(order) // batch_size), image_width)
    labels, targets, weights = kernel_targets(y, weights, config.task == "classification")
    if soft_targets is not None:  # beside the labels: kernels/losses.py, distill_backward
        targets = np.require(soft_targets, np.float64, ["C"])
    with single_threaded_blas(shards > 1):
        loss_sum, correct, batches, state.step, state.lr = train_epoch(
            state.buffers, progress, state.step, pixels, labels, targets, weights, order,
            batch_size, layout.arrays(), codes, hyper, shards)
    total_weight = weights[order].sum() if len(weights) else len(order)
    return loss_sum / max(batches, 1), correct / total_weight, batches


def _infer(params, layout: Layout, x, y, weights, config: TrainConfig, want_outputs: bool):
    """The compiled forward pass of inference (kernels.epoch.infer) on every row of x, in
    the parameters' dtype: (loss, or 0 when y is None; argmaxes; outputs or None)."""
    import numba

    from .kernels.epoch import infer

    codes, hyper = kernel_inputs(config)
    # writeable too: a read-only array would compile the kernel again for its own Numba type
    x = np.require(x, dtype=params.dtype, requirements=["C", "W"])
    n, width = len(x), layout.sizes[-1]
    outputs = np.empty((n if want_outputs else 0, width), dtype=params.dtype)
    predictions = np.empty(n, dtype=np.int64)
    labels, targets, weights = kernel_targets(y, weights, config.task == "classification")
    workers = numba.get_num_threads()
    # Numba's threads split the rows; BLAS stays single-threaded inside them, so no idle
    # BLAS threads are left spinning into the next epoch.
    with single_threaded_blas(workers > 1):
        mean_loss = infer(outputs, predictions, x, labels, targets, weights, params,
                          layout.arrays(), codes, hyper, workers)
    return float(mean_loss), predictions, outputs if want_outputs else None


def _infer_members(params, layout: Layout, x, y, weights, config: TrainConfig,
                   want_outputs: bool):
    """_infer of one network (params (P,)) or of an ensemble (params (K, P)): the members'
    outputs averaged in float64, returned in the parameters' dtype; the argmaxes of the
    average; the loss of the average (output_loss; 0 when y is None)."""
    if params.ndim == 1:
        return _infer(params, layout, x, y, weights, config, want_outputs)
    total = None
    for member in params:
        outputs = _infer(np.ascontiguousarray(member), layout, x, None, None, config, True)[2]
        total = outputs.astype(np.float64) if total is None else total + outputs
    mean = total / len(params)
    loss = 0.0 if y is None else output_loss(config, mean, y, weights)
    return loss, mean.argmax(axis=1), mean.astype(params.dtype) if want_outputs else None


def output_loss(config: TrainConfig, outputs, y, weights=None) -> float:
    """The weighted mean loss (config.loss, no label smoothing: as the inference pass) of
    given output-layer values (N, K), e.g. an ensemble's averaged ones: cross_entropy is
    -log p[y] of the probabilities, mean_squared_error sum_k (p_k - onehot_k)^2,
    binary_cross_entropy -(y log p + (1 - y) log(1 - p)) summed over labels, poisson
    sum_t (y log(y / mu) - y + mu), the others as kernels/losses.py on the values.
    Probabilities and means are taken no smaller than the smallest positive float64, so a
    saturated one gives a large loss instead of an infinite one."""
    outputs = np.asarray(outputs, dtype=np.float64)
    labels, targets, w = kernel_targets(y, weights, config.task == "classification")
    tiny = np.finfo(np.float64).tiny
    name, n = config.loss, len(outputs)
    if name == "cross_entropy":
        rows = -np.log(np.maximum(outputs[np.arange(n), labels], tiny))
    elif name == "mean_squared_error":
        onehot = np.zeros_like(outputs)
        onehot[np.arange(n), labels] = 1
        rows = ((outputs - onehot) ** 2).sum(axis=1)
    elif name == "binary_cross_entropy":
        rows = -(targets * np.log(np.maximum(outputs, tiny))
                 + (1 - targets) * np.log(np.maximum(1 - outputs, tiny))).sum(axis=1)
    elif name == "poisson":
        mu = np.maximum(outputs, tiny)
        y_log = np.where(targets > 0, targets * np.log(np.where(targets > 0, targets, 1.0) / mu),
                         0.0)
        rows = (y_log - targets + mu).sum(axis=1)
    else:
        residual = outputs - targets
        if name == "squared_error":
            rows = 0.5 * (residual ** 2).mean(axis=1)
        elif name == "absolute_error":
            rows = np.abs(residual).mean(axis=1)
        elif name == "huber":
            delta, size = config.huber_delta, np.abs(residual)
            rows = np.where(size <= delta, 0.5 * residual ** 2,
                            delta * (size - delta / 2)).mean(axis=1)
        else:
            raise ValueError(f"unknown loss {name!r}")
    w = np.ones(n) if len(w) == 0 else w
    return float((w * rows).sum() / w.sum())


def score_params(params, layout: Layout, x, y, config: TrainConfig, weights=None,
                 target_scaling=None) -> dict:
    """{"loss": the set's loss, and the task's figures (metrics.TASK_METRICS), "predictions":
    argmaxes, "outputs": the output layer's values or None, "truth": y in the outputs'
    units} of a parameter buffer (P,), or of an ensemble's (K, P), on a set;
    y: class indices or float targets; weights: per row or None; config: validated.
    target_scaling: (mean, scale) when the network learns standardised targets (y given in
    those units): the loss stays in them, the figures and outputs are in the data's units."""
    want_outputs = config.task != "classification"
    loss, predictions, outputs = _infer_members(params, layout, x, y, weights, config,
                                                want_outputs)
    if target_scaling is not None:
        mean, scale = target_scaling
        outputs = outputs * scale + mean
        y = np.asarray(y).reshape(len(y), -1) * scale + mean
    figures = task_metrics(config.task, y, outputs, predictions, weights)
    return {"loss": loss, **figures, "predictions": predictions, "outputs": outputs,
            "truth": y}


def evaluate_params(params, layout: Layout, x, labels, config: TrainConfig, weights=None):
    """(loss, accuracy, predicted classes) of a parameter buffer (or an ensemble's (K, P))
    on a set of classes; config: a validated TrainConfig (its activation and loss)."""
    mean_loss, predictions, _ = _infer_members(params, layout, x,
                                               np.asarray(labels, dtype=np.int64), weights,
                                               config, want_outputs=False)
    return mean_loss, task_metrics("classification", labels, None, predictions,
                                   weights)["accuracy"], predictions


def predict_outputs(params, layout: Layout, x, config: TrainConfig):
    """(the output layer's values (N, K): probabilities, or regression values; the argmax of
    each row (N,)) for the rows of x, in the parameters' dtype; config: a validated
    TrainConfig (its activation and loss). params (K, P): an ensemble's average."""
    _, predictions, outputs = _infer_members(params, layout, x, None, None, config,
                                             want_outputs=True)
    return outputs, predictions


def confusion_matrix(labels, predictions, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(
        classes, classes)
