"""Benchmark cases: each Numba kernel beside its NumPy twin from reference.py, on the same inputs.

One list of cases serves both `fastmlp bench` (a table) and the pytest-benchmark suite in
bench/ (a group per kernel). A case is a pair of zero-argument callables doing the same work.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import reference as ref
from .config import TrainConfig, code_of
from .kernels.interface import (ACTIVATIONS, LEAKY_SLOPE, LOSS_OUTPUT, LOSSES, OPTIMIZERS,
                                kernel_inputs)
from .model import Layout, init_params

SEED_CONFIG = dict(batch_size=32, hidden_size=64, num_layers=3, activation="ReLU",
                   optimizer="adam", learning_rate=1e-3, loss="cross_entropy",
                   weight_init="Xavier", dtype="float32")


@dataclass
class Case:
    group: str                       # kernel family, e.g. "dense_forward"
    label: str                       # size or variant, e.g. "b32 784x64"
    numba: Callable[[], object]
    reference: Callable[[], object]
    work: float = 0.0                # FLOPs (dense, epoch) or parameters (optimizers) per call
    unit: str = "FLOP"
    # epochs: the same epoch in other libraries, by ANCHORS name (absent: not installed, or
    # no epoch of this task: ANCHOR_TASKS)
    anchors: dict = field(default_factory=dict)
    # the reference's seconds times this are its time for the numba call's work (it runs on
    # a slice of the rows when the whole would take too long); 1: the same work
    reference_scale: float = 1.0


# ----------------------------------------------------------------------------- kernels

# "shard": a batch of 32 split over two threads
DENSE_SIZES = {"small": (32, 64, 64), "shard": (16, 784, 64), "medium": (32, 784, 64),
               "large": (256, 784, 512)}
ELEMENTWISE_SIZES = {"small": (32, 64), "medium": (256, 512), "large": (1024, 1024)}
OPTIMIZER_SIZES = {"small": 100_000, "medium": 1_000_000, "large": 10_000_000}


def dense_cases(dtype="float32", sizes=DENSE_SIZES) -> list:
    from .kernels.dense import dense_backward, dense_forward

    rng = np.random.default_rng(0)
    relu = code_of("ReLU", ACTIVATIONS)
    cases = []
    for name, (batch, n_in, n_out) in sizes.items():
        a_in = rng.random((batch, n_in)).astype(dtype)
        weights = rng.normal(size=(n_in, n_out)).astype(dtype)
        bias = rng.normal(size=n_out).astype(dtype)
        out = np.empty((batch, n_out), dtype=dtype)
        dz = rng.normal(size=(batch, n_out)).astype(dtype)
        dweights, dbias = np.empty_like(weights), np.empty_like(bias)
        dz_in = np.empty_like(a_in)
        flops = 2.0 * batch * n_in * n_out
        label = f"{name} b{batch} {n_in}x{n_out}"
        cases.append(Case(
            "dense_forward", label,
            lambda out=out, a=a_in, w=weights, b=bias: dense_forward(out, a, w, b, relu, 0.0),
            lambda a=a_in, w=weights, b=bias: ref.activate("ReLU", a @ w + b), flops))

        def gold_backward(a=a_in, w=weights, dz=dz):
            return (a.T @ dz, dz.sum(axis=0),
                    (dz @ w.T) * ref.activation_derivative("ReLU", a))

        cases.append(Case(
            "dense_backward", label,
            lambda dw=dweights, db=dbias, dzi=dz_in, dz=dz, a=a_in, w=weights:
                dense_backward(dw, db, dzi, dz, a, w, relu, 0.0, True, a, a, False, a[:0],
                               a[:0]),
            gold_backward, 2 * flops))
    return cases


def activation_cases(dtype="float32", sizes=ELEMENTWISE_SIZES) -> list:
    from .kernels.activations import (bias_activate, bias_activate_keeping_z,
                                      needs_pre_activations, scale_by_derivative)

    rng = np.random.default_rng(1)
    cases = []
    for name in ACTIVATIONS:
        code = code_of(name, ACTIVATIONS)
        for size_name, shape in sizes.items():
            z = rng.normal(size=shape).astype(dtype)
            bias = rng.normal(size=shape[1]).astype(dtype)
            work, kept = np.empty_like(z), np.empty_like(z)
            grad = rng.normal(size=shape).astype(dtype)
            label = f"{name} {size_name} {shape[0]}x{shape[1]}"

            def mine(z=z, bias=bias, work=work, kept=kept, grad=grad, code=code):
                # the training pass: GELU and SiLU keep z + bias beside their output
                if needs_pre_activations(code):
                    kept[...] = z
                    bias_activate_keeping_z(work, kept, bias, code, LEAKY_SLOPE)
                    scale_by_derivative(grad, kept, code, LEAKY_SLOPE)
                else:
                    work[...] = z
                    bias_activate(work, bias, code, LEAKY_SLOPE)
                    scale_by_derivative(grad, work, code, LEAKY_SLOPE)

            def gold(z=z, bias=bias, grad=grad, name=name):
                kept = ref.derivative_input(name, z + bias)
                return grad * ref.activation_derivative(name, kept)

            cases.append(Case("activation", label, mine, gold, float(z.size), "values"))
    return cases


def sample_targets(loss: str, rng, rows: int, width: int):
    """What a loss is learnt against, drawn at random: class indices (rows,) for the softmax
    losses, 0/1 labels (rows, width) for binary cross-entropy, counts for poisson, numbers
    for the other regression losses."""
    output = LOSS_OUTPUT[loss]
    if output == "softmax":
        return rng.integers(0, width, rows)
    if output == "sigmoid":
        return (rng.random((rows, width)) < 0.4).astype(np.float64)
    if output == "exp":
        return rng.poisson(2.0, size=(rows, width)).astype(np.float64)
    return rng.normal(size=(rows, width)) * 2


def loss_cases(dtype="float32") -> list:
    from .engine import kernel_targets
    from .kernels.losses import loss_backward

    rng = np.random.default_rng(2)
    cases = []
    for name in LOSSES:
        for batch in (32, 256, 4096):
            logits = rng.normal(size=(batch, 10)).astype(dtype)
            y = sample_targets(name, rng, batch, 10)
            labels, targets, weights = kernel_targets(y)
            dlogits = np.empty_like(logits)
            code = code_of(name, LOSSES)

            def mine(d=dlogits, z=logits, labels=labels, targets=targets, weights=weights,
                     code=code, rows=np.arange(batch)):
                loss_backward(d, z, rows, labels, targets, weights, code, float(len(z)), 0.0,
                              1.0)

            cases.append(Case("loss", f"{name} b{batch}", mine,
                              lambda z=logits, y=y, name=name: ref.loss_and_grad(name, z, y),
                              float(batch), "rows"))
    return cases


def optimizer_cases(dtype="float32", sizes=OPTIMIZER_SIZES) -> list:
    from .kernels.optimizers import optimizer_update

    rng = np.random.default_rng(3)
    config = TrainConfig().validated()
    _, hyper = kernel_inputs(config)
    cases = []
    for size_name, count in sizes.items():
        # one weight matrix holding `count` parameters (plus nothing else): one segment
        layout = Layout((count // 100, 100))
        params = rng.normal(size=layout.num_params).astype(dtype)
        grads = rng.normal(size=layout.num_params).astype(dtype)
        segments = layout.decay_segments()
        layers = layout.views(params.copy())
        gold_grads = layout.views(grads)
        for name in OPTIMIZERS:
            code = code_of(name, OPTIMIZERS)
            state1, state2 = np.zeros_like(params), np.zeros_like(params)
            gold = ref.Optimizer(name, layers, vars(config))

            def mine(p=params, s1=state1, s2=state2, g=grads, segments=segments, code=code):
                optimizer_update(p, s1, s2, g, segments, 10, code, hyper, config.learning_rate,
                                 0, p.size)

            cases.append(Case("optimizer", f"{name} {size_name} {layout.num_params:,}",
                              mine, lambda gold=gold, w=layers, g=gold_grads: gold.step(w, g),
                              float(layout.num_params), "params"))
    return cases


def kernel_cases(dtype="float32") -> list:
    return dense_cases(dtype) + activation_cases(dtype) + loss_cases(dtype) + optimizer_cases(dtype)


# ----------------------------------------------------------------------------- epochs


def flops_per_sample(sizes) -> float:
    """Forward (2 n_in n_out per layer), dW (the same) and dX for every layer but the first."""
    products = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return 4.0 * sum(products) + 2.0 * sum(products[1:])


def timed_epoch(group: str, label: str, config, layout, kernel_data, twin_data, anchors,
                **extra) -> Case:
    """A Case of one epoch: the compiled epoch (engine.run_epoch) on kernel_data and its twin
    (reference.train_epoch) on twin_data, each (x, y, order), from the same initial
    parameters (seed 0); work: the FLOPs of kernel_data's rows."""
    from .engine import TrainState, run_epoch

    start = init_params(layout, config.weight_init, np.random.default_rng(0),
                        np.dtype(config.dtype))
    state, layers = TrainState.fresh(start.copy()), layout.views(start.copy())
    gold = ref.Optimizer(config.optimizer, layers, vars(config))
    (x, y, order), (twin_x, twin_y, twin_order) = kernel_data, twin_data
    return Case(
        group, label,
        lambda: run_epoch(state, layout, x, y, order, config.batch_size, config),
        lambda: ref.train_epoch(layers, gold, twin_x, twin_y, twin_order, config.batch_size,
                                config.activation, config.loss),
        flops_per_sample(layout.sizes) * len(order), "FLOP", anchors=anchors, **extra)


def epoch_case(splits, rows=None, **overrides) -> Case:
    """One training epoch of a configuration on real data: Numba, reference, PyTorch if present."""
    from .data import scale_pixels

    config = TrainConfig(**{**SEED_CONFIG, **overrides}).validated()
    layout = Layout(config.layer_sizes)
    dtype = np.dtype(config.dtype)
    pixels, labels = splits.pixels_train[:rows], splits.y_train[:rows]
    x = scale_pixels(pixels, dtype)  # what the reference (and torch) train on
    order = np.random.default_rng(0).permutation(len(labels))
    label = (f"b{config.batch_size} {'-'.join(map(str, config.layer_sizes))} "
             f"{config.activation} {config.optimizer} {config.dtype} {len(labels)} rows")
    return timed_epoch("epoch", label, config, layout, (pixels, labels, order),
                       (x, labels, order), anchor_epochs(config, x, labels, order))


# ----------------------------------------------------------------------------- regression
# Issue K's speed target: one regression epoch on a generated 100,000 x 50 table, against
# scikit-learn's MLPRegressor at the same settings.

REGRESSION_ROWS, REGRESSION_FEATURES = 100_000, 50
REGRESSION_NOISE = 0.2  # the noise's spread, as a share of the signal's
REGRESSION_CONFIG = dict(task="regression", loss="squared_error", hidden_size=256,
                         num_layers=2, activation="ReLU", optimizer="adam", learning_rate=1e-3,
                         weight_init="Xavier", dtype="float32")
REGRESSION_BATCH_SIZES = (32, 200)  # 200: scikit-learn's batch_size="auto", min(200, rows)
# The reference (seconds per epoch at batch 32) runs on this many rows of each epoch, its
# time scaled to the whole table: a multiple of every batch size above, so the batches are
# the same full batches
REGRESSION_REFERENCE_ROWS = 20_000
# the target: fastmlp's epoch this many times faster than scikit-learn's, per batch
REGRESSION_TARGETS = {32: 10.0, 200: 4.0}


def regression_table(rows=REGRESSION_ROWS, features=REGRESSION_FEATURES, seed=0,
                     dtype="float32"):
    """(x (rows, features), y (rows,)) of a generated regression table, made in memory: x
    standard normal; y a smooth nonlinear function of six random unit projections
    p = x @ D of x (tanh, sin, a product of two tanh, a linear part) plus Gaussian noise of
    REGRESSION_NOISE times the signal's spread, standardized (mean 0, variance 1), so the
    best possible RMSE is regression_noise_floor(). Seeded: x, the directions and the noise
    draw from their own streams, so row i is the same in a table of any length (up to the
    standardization)."""
    directions_seed, x_seed, noise_seed = np.random.SeedSequence(seed).spawn(3)
    directions = np.random.default_rng(directions_seed).standard_normal((features, 6))
    directions /= np.linalg.norm(directions, axis=0)
    x = np.random.default_rng(x_seed).standard_normal((rows, features))
    p = x @ directions  # each column ~ N(0, 1)
    signal = (1.5 * np.tanh(p[:, 0]) + np.sin(1.5 * p[:, 1])
              + np.tanh(p[:, 2]) * np.tanh(p[:, 3]) + 0.5 * np.sin(p[:, 4] + p[:, 5])
              + 0.5 * p[:, 5])
    noise = np.random.default_rng(noise_seed).standard_normal(rows)
    y = signal + REGRESSION_NOISE * signal.std() * noise
    y = (y - y.mean()) / y.std()
    return x.astype(dtype), y.astype(dtype)


def regression_noise_floor() -> float:
    """The RMSE of the noiseless signal itself on regression_table's standardized target."""
    return REGRESSION_NOISE / np.sqrt(1 + REGRESSION_NOISE ** 2)


def regression_case(x, y, batch_size, reference_rows=REGRESSION_REFERENCE_ROWS,
                    **overrides) -> Case:
    """One epoch of REGRESSION_CONFIG at this batch size on the table (x, y): Numba
    (engine.run_epoch) and scikit-learn's MLPRegressor on every row, the reference on the
    first reference_rows of the same epoch's order (None: all of them), its time scaled to
    the whole epoch (Case.reference_scale). overrides: other settings (e.g. dtype)."""
    config = TrainConfig(**{**REGRESSION_CONFIG, "batch_size": batch_size,
                            **overrides}).validated()
    dtype = np.dtype(config.dtype)
    x, y = x.astype(dtype, copy=False), y.astype(dtype, copy=False)
    targets = y.reshape(len(y), -1)  # (N, T), as the reference takes them
    layout = Layout((x.shape[1], *config.hidden_widths, targets.shape[1]))
    order = np.random.default_rng(0).permutation(len(y))
    reference_order = order[:reference_rows]
    label = (f"b{config.batch_size} {'-'.join(map(str, layout.sizes))} {config.activation} "
             f"{config.optimizer} {config.dtype} {len(y):,} rows")
    scale = len(order) / len(reference_order)
    if scale != 1:
        label += f"; reference on {len(reference_order):,} rows, its time x{scale:g}"
    if config.batch_size in REGRESSION_TARGETS:
        label += f"; target {REGRESSION_TARGETS[config.batch_size]:g}x sklearn"
    return timed_epoch("regression", label, config, layout, (x, y, order),
                       (x, targets, reference_order), anchor_epochs(config, x, y, order),
                       reference_scale=scale)


def regression_cases(rows=REGRESSION_ROWS, reference_rows=REGRESSION_REFERENCE_ROWS,
                     batch_sizes=REGRESSION_BATCH_SIZES, **overrides) -> list:
    """regression_case at every batch size, on one regression_table of `rows` rows."""
    x, y = regression_table(rows)
    return [regression_case(x, y, batch_size, reference_rows, **overrides)
            for batch_size in batch_sizes]


# ----------------------------------------------------------------------------- inference

INFERENCE_ROWS = 10_000  # Fashion-MNIST's test set
INFERENCE_WIDTHS = (64, 512)  # three hidden layers each: the seed net and a wide one


def inference_cases(splits, rows=INFERENCE_ROWS) -> list:
    """Class probabilities of `rows` test images through the seed net and through 3x512, by
    the compiled forward pass (engine.predict_outputs, all cores), its NumPy twin
    (reference.predict) and scikit-learn's MLPClassifier.predict_proba on the same float32
    weights (all cores through NumPy's BLAS)."""
    from .data import model_inputs
    from .engine import predict_outputs

    cases = []
    for width in INFERENCE_WIDTHS:
        config = TrainConfig(**{**SEED_CONFIG, "hidden_size": width}).validated()
        layout = Layout(config.layer_sizes)
        params = init_params(layout, config.weight_init, np.random.default_rng(0),
                             np.dtype(config.dtype))
        x = model_inputs(splits.x_test[:rows], params.dtype)
        layers = layout.views(params)
        anchors = {}
        if (sklearn := sklearn_predictor(config, layers)) is not None:
            anchors["sklearn"] = lambda model=sklearn, x=x: model.predict_proba(x)
        cases.append(Case(
            "inference", f"{'-'.join(map(str, layout.sizes))} {config.dtype} {len(x)} rows",
            lambda params=params, layout=layout, x=x, config=config:
                predict_outputs(params, layout, x, config),
            lambda layers=layers, x=x: ref.predict(layers, x, config.activation),
            2.0 * sum(n_in * n_out for n_in, n_out in zip(layout.sizes, layout.sizes[1:]))
            * len(x), "FLOP", anchors=anchors))
    return cases


def sklearn_predictor(config, layers):
    """scikit-learn's MLPClassifier holding these (W, b) layers (float32, as fitted on float32
    X), or None when scikit-learn is not installed."""
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    import warnings

    sizes = [weights.shape[1] for weights, _ in layers[:-1]]
    classes = layers[-1][0].shape[1]
    model = MLPClassifier(hidden_layer_sizes=sizes,
                          activation=SKLEARN_ACTIVATIONS[config.activation], max_iter=1)
    x = np.zeros((classes, layers[0][0].shape[0]), dtype=layers[0][0].dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(x, np.arange(classes), classes=np.arange(classes))
    model.coefs_ = [weights.copy() for weights, _ in layers]
    model.intercepts_ = [bias.copy() for _, bias in layers]
    return model


# fastmlp's activation names -> scikit-learn's
SKLEARN_ACTIVATIONS = {"ReLU": "relu", "sigmoid": "logistic", "tanh": "tanh",
                       "identity": "identity"}


def sklearn_mlp(config):
    """scikit-learn's MLPClassifier, or MLPRegressor for a regression config, at the config's
    settings (Adam, hidden widths, activation, batch, learning rate, Adam's betas and
    epsilon; its own Glorot-uniform init, fastmlp's Xavier for these activations, biases
    included), random_state 0, or None when scikit-learn is not installed. Its alpha is
    fastmlp's weight decay times the batch size (fastmlp/estimator.py explains the two L2
    conventions)."""
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError:
        return None
    settings = dict(hidden_layer_sizes=config.hidden_widths,
                    activation=SKLEARN_ACTIVATIONS[config.activation], solver="adam",
                    alpha=config.weight_decay * config.batch_size, batch_size=config.batch_size,
                    learning_rate_init=config.learning_rate, beta_1=config.beta1,
                    beta_2=config.beta2, epsilon=config.epsilon, random_state=0)
    if config.task != "regression":
        return MLPClassifier(**settings)
    # squared_error is MLPRegressor's default (its `loss` parameter is newer than 1.6), and
    # is fastmlp's 0.5 * mean squared residual too
    return MLPRegressor(**settings, **({} if config.loss == "squared_error"
                                       else {"loss": config.loss}))


def sklearn_epoch(config, x, y, order):
    """One epoch of sklearn_mlp(config) (partial_fit: one pass in batches, in its own
    shuffled order) on x (float32 in, float32 weights) and y (classes, or targets of x's
    dtype), or None when scikit-learn is not installed."""
    model = sklearn_mlp(config)
    if model is None:
        return None
    import warnings

    classes = ({} if config.task == "regression"
               else {"classes": np.arange(config.layer_sizes[-1])})

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(x, y, **classes)
    return run


def torch_epoch(config, x, labels, order, compiled=False):
    """The same network and optimizer in PyTorch (CPU), eager, or with the whole training
    step (forward, loss, backward, Adam) under torch.compile when `compiled`; None when
    torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    dims = config.layer_sizes
    layers = []
    for n_in, n_out in zip(dims[:-2], dims[1:-1]):
        layers += [torch.nn.Linear(n_in, n_out), _torch_activation(torch, config.activation)]
    layers.append(torch.nn.Linear(dims[-2], dims[-1]))
    net = torch.nn.Sequential(*layers).to(getattr(torch, config.dtype))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate,
                                 betas=(config.beta1, config.beta2), eps=config.epsilon,
                                 weight_decay=config.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_all, y_all = torch.from_numpy(x), torch.from_numpy(labels)
    order_t = torch.from_numpy(order)

    def step(xb, yb):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        optimizer.step()

    if compiled:  # compiled at the first calls (each batch shape), outside the timing
        step = torch.compile(step, dynamic=False)  # one graph per batch shape

    def run():
        for start in range(0, len(order), config.batch_size):
            rows = order_t[start:start + config.batch_size]
            step(x_all[rows], y_all[rows])
    return run


def torch_compiled_epoch(config, x, labels, order):
    return torch_epoch(config, x, labels, order, compiled=True)


def _torch_activation(torch, name):
    return {"identity": torch.nn.Identity, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh,
            "ReLU": torch.nn.ReLU}[name]()


def jax_epoch(config, x, labels, order):
    """The same network, cross-entropy and Adam (with fastmlp's coupled L2 decay) as ONE
    jax.jit of a lax.scan over the batches (the whole epoch compiled, like fastmlp's), or None
    when JAX is not installed. The last partial batch is left out (scan needs equal
    batches)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    activation = {"identity": lambda z: z, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
                  "ReLU": jax.nn.relu}[config.activation]
    layout = Layout(config.layer_sizes)
    start = init_params(layout, config.weight_init, np.random.default_rng(0), np.float32)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layout.views(start)]
    lr, b1, b2, eps, decay = (config.learning_rate, config.beta1, config.beta2, config.epsilon,
                              config.weight_decay)

    def loss(params, xb, yb):
        a = xb
        for w, b in params[:-1]:
            a = activation(a @ w + b)
        w, b = params[-1]
        log_p = jax.nn.log_softmax(a @ w + b)
        return -jnp.mean(jnp.take_along_axis(log_p, yb[:, None], axis=1))

    def step(carry, rows):
        params, m, v, t = carry
        grads = jax.grad(loss)(params, x_all[rows], y_all[rows])
        grads = [(dw + decay * w, db) for (w, _), (dw, db) in zip(params, grads)]
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        size = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - size * m / (jnp.sqrt(v) + eps * jnp.sqrt(1 - b2 ** t)),
            params, m, v)
        return (params, m, v, t), None

    batches = len(order) // config.batch_size
    batch_rows = jnp.asarray(order[:batches * config.batch_size].reshape(batches, -1))
    x_all, y_all = jnp.asarray(x), jnp.asarray(labels)
    epoch = jax.jit(lambda carry, rows: jax.lax.scan(step, carry, rows)[0])
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = [(params, zeros, zeros, jnp.float32(0.0))]

    def run():
        carry[0] = epoch(carry[0], batch_rows)
        jax.block_until_ready(carry[0])
    return run


# The other libraries an epoch is timed against (each optional), by name: a builder
# (config, x, labels, order) -> a zero-argument epoch, or None when not installed.
ANCHORS = {"jax": jax_epoch, "torch": torch_epoch, "torch_compile": torch_compiled_epoch,
           "sklearn": sklearn_epoch}
# the tasks each builder has an epoch of (jax's and torch's learn classes only)
ANCHOR_TASKS = {"jax": ("classification",), "torch": ("classification",),
                "torch_compile": ("classification",),
                "sklearn": ("classification", "regression")}
INSTALL_HINTS = {"jax": "pip install -e '.[jax]'", "torch": "pip install -e '.[torch]'",
                 "torch_compile": "pip install -e '.[torch]'",
                 "sklearn": "pip install scikit-learn"}


def anchor_epochs(config, x, y, order) -> dict:
    """{name: the same epoch in that library} of every anchor installed that has an epoch of
    the config's task."""
    return {name: run for name, build in ANCHORS.items() if config.task in ANCHOR_TASKS[name]
            and (run := build(config, x, y, order)) is not None}


# ----------------------------------------------------------------------------- timing


SETTLE_SECONDS = 0.5  # between two libraries' turns: their idle thread pools stop spinning


def best_seconds(contenders: dict, min_time=0.2, max_calls=200, rounds=3, settle=0.0) -> dict:
    """{name: best seconds per call} for zero-argument callables doing the same work.

    Rounds are interleaved (a, b, a, b, ...) so that a machine whose speed drifts during the
    run treats every contender alike; each round calls a contender enough times to last
    about min_time. settle: seconds of rest before each turn, so that the thread pool of
    the library timed before (OpenMP's, XLA's, BLAS's threads spin for a while after their
    work) does not compete with the next one."""
    calls = {}
    for name, fn in contenders.items():
        fn()  # compile, warm caches
        once = max(_timed(fn), 1e-7)
        calls[name] = int(min(max_calls, max(1, min_time / once)))
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, fn in contenders.items():
            time.sleep(settle)
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
    return best


def gemm_flops_per_second(n=2048, dtype="float32", rounds=3) -> float:
    """This machine's GEMM rate: numpy A @ B on n x n matrices, all cores, best of rounds."""
    a = np.random.default_rng(0).random((n, n)).astype(dtype)
    b = a.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(rounds))
    return 2.0 * n ** 3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- `fastmlp bench`

# Timed on all cores, against the anchors and the FLOP bound (the kernels: one thread each)
WHOLE_MACHINE_GROUPS = ("epoch", "regression", "inference")
# (config overrides, training rows used): wide nets on a slice so the reference stays bearable
EPOCH_CONFIGS = (
    ({}, None),                                      # the seed configuration, full epoch
    ({"batch_size": 256}, None),
    ({"batch_size": 256, "hidden_size": 512}, 8192),
)


def run_bench(splits, groups=None, epochs=True, anchors=tuple(ANCHORS), progress=None,
              real_runs=True, data_dir=None, threads=None) -> dict:
    """Time every case (numba vs reference, and the `anchors` libraries for epochs, all
    interleaved), and real multi-epoch `train` runs (on `threads` threads, None: every
    core); returns a JSON-ready dict. groups: the kernel groups, "inference" and
    "regression" (the regression epochs) to time (None: all of them); epochs: the
    Fashion-MNIST epochs too."""
    from threadpoolctl import threadpool_limits

    gemm_rate = gemm_flops_per_second()
    runs = []  # first, before any anchor's library is loaded: see real_run
    if epochs and real_runs:
        for overrides in REAL_RUNS:
            if progress:
                progress(f"a real `fastmlp train` run {overrides}")
            runs.append(real_run(data_dir, len(splits.y_train), gemm_rate, threads,
                                 **overrides))
    cases = [case for case in kernel_cases() if groups is None or case.group in groups]
    if groups is None or "inference" in groups:
        cases += inference_cases(splits)
    if epochs:
        cases += [epoch_case(splits, rows, **overrides) for overrides, rows in EPOCH_CONFIGS]
        for name in anchors:
            if progress and not any(name in case.anchors for case in cases):
                progress(f"note: {name} is not installed ({INSTALL_HINTS[name]}): no {name} "
                         "column")
    if groups is None or "regression" in groups:
        cases += regression_cases()
    rows = []
    for case in cases:
        if progress:
            progress(f"{case.group} {case.label}")
        is_epoch = case.group in WHOLE_MACHINE_GROUPS
        contenders = {"numba": case.numba, "reference": case.reference}
        if is_epoch:  # interleaved with the others
            contenders |= {name: run for name, run in case.anchors.items() if name in anchors}
            for run in contenders.values():
                run()  # compile outside the timing (jit, Numba, torch's first call)
            # an epoch is long enough to time once a round; inference (milliseconds) is
            # repeated for a quarter of a second a round, over more rounds
            quick = case.group == "inference"
            best = best_seconds(contenders, min_time=0.25 if quick else 0.0,
                                rounds=5 if quick else 2, settle=SETTLE_SECONDS)
        else:
            # Kernels one thread each: interleaving calls into two BLAS libraries (SciPy's,
            # which Numba calls, and NumPy's) leaves the idle one's threads spinning against
            # the busy one, which would distort small GEMMs by 10x or more.
            with threadpool_limits(limits=1):
                best = best_seconds(contenders)
        reference = best["reference"] * case.reference_scale
        row = {"group": case.group, "case": case.label, "unit": case.unit, "work": case.work,
               "numba_seconds": best["numba"], "reference_seconds": reference,
               "speedup": reference / best["numba"]}
        if case.reference_scale != 1:
            row["reference_scale"] = case.reference_scale
        if is_epoch:
            row["flop_bound_seconds"] = case.work / gemm_rate
            row["times_flop_bound"] = row["numba_seconds"] / row["flop_bound_seconds"]
            row["gemm_rate_fraction"] = 1.0 / row["times_flop_bound"]
            for name in ANCHORS:
                if name in best:
                    row[f"{name}_seconds"] = best[name]
                    row[f"speedup_vs_{name}"] = best[name] / best["numba"]
        rows.append(row)
    return {"gemm_gflops": gemm_rate / 1e9, "rows": rows, "runs": runs}


# Real runs: `train` as a user runs it (evaluation between epochs, checkpoints, metrics).
REAL_RUNS = ({"batch_size": 32}, {"batch_size": 256})
REAL_RUN_EPOCHS = 4


def real_run(data_dir, train_rows: int, gemm_rate: float, threads=None, **overrides) -> dict:
    """A real multi-epoch `fastmlp train` of the seed configuration, in a process of its own
    as a user runs it (wandb off, no pictures, into a temporary directory; on `threads`
    threads, None: every core): every epoch's training seconds, and the slowest of epochs
    2..N against the fastest. run_bench times these first, before any anchor's library
    (JAX, PyTorch) is loaded."""
    import glob
    import json
    import shlex
    import subprocess
    import tempfile

    config = TrainConfig(**{**SEED_CONFIG, **overrides}, epochs=REAL_RUN_EPOCHS,
                         data_dir=data_dir, threads=threads).validated()
    with tempfile.TemporaryDirectory() as output_dir:
        command = [sys.executable, "-m", "cli", *shlex.split(config.train_command())[1:],
                   "--wandb-mode", "disabled", "--no-plots", "--no-progress",
                   "--output-dir", output_dir]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the real run {shlex.join(command[3:])} failed:\n"
                               f"{done.stderr[-2000:]}")
        (summary_path,) = glob.glob(os.path.join(output_dir, "*", "summary.json"))
        with open(summary_path) as summary:
            seconds = [record["train_seconds"] for record in json.load(summary)["epochs"]]
    bound = flops_per_sample(config.layer_sizes) * train_rows / gemm_rate
    later = seconds[1:]
    return {"case": f"b{config.batch_size} {'-'.join(map(str, config.layer_sizes))} "
                     f"{config.epochs} epochs", "epoch_seconds": seconds,
            "slowest_over_fastest": max(later) / min(later),
            "times_flop_bound": min(seconds) / bound, "flop_bound_seconds": bound}


def print_bench_table(results: dict) -> None:
    """The figures a user reads at a glance: time, speed-up over the reference, FLOP bound."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    kernels = Table(title="kernels: Numba vs the NumPy reference (float32, one thread each)")
    for column in ("kernel", "case", "numba", "reference", "speed-up", "numba throughput"):
        kernels.add_column(column, justify="left" if column in ("kernel", "case") else "right")
    epochs = Table(title=f"one training epoch (Fashion-MNIST, or regression on a generated "
                         f"{REGRESSION_ROWS:,} x {REGRESSION_FEATURES} table), or inference on "
                         f"10,000 rows (all cores; FLOP bound at the measured GEMM rate, "
                         f"{results['gemm_gflops']:.0f} GFLOP/s)")
    anchor_columns = [name for name in ANCHORS
                      if any(f"{name}_seconds" in row for row in results["rows"])]
    for column in ("configuration", "numba", "reference", "speed-up", "x FLOP bound",
                   *[f"{label}{name}" for name in anchor_columns for label in ("", "vs ")]):
        epochs.add_column(column, justify="left" if column == "configuration" else "right")
    for row in results["rows"]:
        rate = row["work"] / row["numba_seconds"]
        throughput = (f"{rate / 1e9:.1f} GFLOP/s" if row["unit"] == "FLOP"
                      else f"{rate / 1e6:.0f} M{row['unit']}/s")
        times = (_seconds(row["numba_seconds"]), _seconds(row["reference_seconds"]),
                 f"{row['speedup']:.1f}x")
        if row["group"] in WHOLE_MACHINE_GROUPS:
            anchor_cells = []
            for name in anchor_columns:
                timed = f"{name}_seconds" in row
                anchor_cells += [_seconds(row[f"{name}_seconds"]) if timed else "-",
                                 f"{row[f'speedup_vs_{name}']:.1f}x" if timed else "-"]
            name = row["case"] if row["group"] == "epoch" else f"{row['group']} {row['case']}"
            epochs.add_row(name, *times, f"{row['times_flop_bound']:.2f}", *anchor_cells)
        else:
            kernels.add_row(row["group"], row["case"], *times, throughput)
    if kernels.row_count:
        console.print(kernels)
    if epochs.row_count:
        console.print(epochs)
    if results.get("runs"):
        runs = Table(title="real `fastmlp train` runs (evaluation, checkpoints, metrics between "
                           "epochs; default threads)")
        for column in ("configuration", "seconds per epoch", "slowest / fastest of epochs 2..N",
                       "x FLOP bound (fastest)"):
            runs.add_column(column, justify="left" if column == "configuration" else "right")
        for run in results["runs"]:
            runs.add_row(run["case"], "  ".join(f"{t:.3f}" for t in run["epoch_seconds"]),
                         f"{run['slowest_over_fastest']:.2f}", f"{run['times_flop_bound']:.2f}")
        console.print(runs)


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} us"
