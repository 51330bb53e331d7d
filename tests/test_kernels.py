"""Numba kernels against their plain NumPy twins in fastmlp/reference.py ("mine vs gold"),
and both against centred finite differences. float64, tight tolerances, seeded shapes."""
import itertools

from pathlib import Path

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.config import TrainConfig
from fastmlp.data import scale_pixels
from fastmlp.engine import NO_LABELS, NO_TARGETS, NO_WEIGHTS, kernel_targets
from fastmlp.kernels.activations import (bias_activate, bias_activate_keeping_z,
                                         needs_pre_activations, scale_by_derivative)
from fastmlp.kernels.columns import column_moments, standardise_column
from fastmlp.kernels.dense import dense_backward, dense_forward, dense_forward_keeping_z
from fastmlp.kernels.epoch import infer, train_epoch
from fastmlp.kernels.gemm import (MAX_TILE_ROWS, SMALL_ROWS, SMALL_WEIGHTS, TILE_BYTES, matmul,
                                  tiled_matmul, tiles_suit)
from fastmlp.kernels.interface import (ACTIVATIONS, CODE_ACTIVATION, CODE_LOSS, CODE_OPTIMIZER,
                                       CODE_SCHEDULE, CODES, LEAKY_SLOPE, LOSS_OUTPUT, LOSSES,
                                       NEEDS_PRE_ACTIVATIONS, OPTIMIZERS, OUTPUTS, SCHEDULES,
                                       TASK_LOSSES, kernel_inputs)
from fastmlp.benchmarks import sample_targets
from fastmlp.kernels.losses import loss_backward
from fastmlp.kernels.optimizers import optimizer_update
from fastmlp.kernels.schedules import scheduled_lr
from fastmlp.model import Layout, init_params

TIGHT = 1e-10  # relative tolerance of Numba vs reference in float64
SLOPE = 0.2  # LeakyReLU's, where a test sets it: not the default, so it must be passed on
HYPER = dict(learning_rate=0.01, momentum=0.9, beta=0.9, beta1=0.9, beta2=0.999,
             epsilon=1e-8, weight_decay=0.01)


def relative_error(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def centred_differences(function, params, step=1e-6):
    """d function / d params[i] for every i, by centred differences."""
    numeric = np.empty_like(params)
    for i in range(params.size):
        bump = np.zeros_like(params)
        bump[i] = step
        numeric[i] = (function(params + bump) - function(params - bump)) / (2 * step)
    return numeric


def flatten(layers):
    """The flat buffer of reference layers: (W, b) pairs, or (W, b, gamma, beta) with
    LayerNorm."""
    return np.concatenate([np.concatenate([p.ravel() for p in layer]) for layer in layers])


def kernel_arrays(activation, loss, optimizer, hyper=HYPER, regime=None, steps_per_epoch=1):
    """The kernels' (codes, hyper) for these choices, made as the engine makes them: from a
    validated TrainConfig (kernels.interface.kernel_inputs). regime: the training additions
    in the kernels' terms (dropout, shift, flip, image_width, lr_schedule, total_steps,
    warmup_steps, ...)."""
    regime = dict(regime or {})
    total = regime.pop("total_steps", steps_per_epoch)
    warmup = regime.pop("warmup_steps", 0)
    shift, flip = regime.pop("shift", 0), regime.pop("flip", 0)
    image_width = regime.pop("image_width", 0)
    augment = ",".join([f"shift:{shift}"] * bool(shift) + ["flip"] * bool(flip)) or "none"
    assert total % steps_per_epoch == 0
    config = TrainConfig(activation=activation, loss=loss, optimizer=optimizer, augment=augment,
                         epochs=total // steps_per_epoch,
                         warmup_epochs=warmup / steps_per_epoch, **hyper, **regime).validated()
    return kernel_inputs(config, steps_per_epoch, image_width)


def kernel_epoch(params, layout, pixels, labels, order, batch_size, activation, loss, optimizer,
                 hyper=HYPER, state=None, shards=1, regime=None, weights=None,
                 soft_targets=None):
    """Run the compiled epoch on uint8 pixels; returns (mean batch loss, accuracy, grads, state).
    labels: class indices or float targets (N, T); weights: per row or None. regime: the
    training additions (dropout, shift, lr_schedule, total_steps, ...; teacher, temperature
    and distill_weight with soft_targets (N, K), a teacher's)."""
    if state is None:
        state = (np.zeros_like(params), np.zeros_like(params), 0)
    state1, state2, step = state
    buffers = np.stack([params, state1, state2, np.zeros_like(params)])
    codes, hyper_array = kernel_arrays(activation, loss, optimizer, hyper, regime,
                                       steps_per_epoch=-(-len(order) // batch_size))
    kernel_labels, targets, kernel_weights = kernel_targets(labels, weights)
    if soft_targets is not None:
        targets = np.ascontiguousarray(soft_targets, dtype=np.float64)
    loss_sum, correct, batches, step, _ = train_epoch(
        buffers, np.zeros(1, np.int64), step, pixels, kernel_labels, targets, kernel_weights,
        order, batch_size, layout.arrays(), codes, hyper_array, shards)
    params[:], state1[:], state2[:] = buffers[0], buffers[1], buffers[2]
    grads = buffers[3]
    total = len(order) if weights is None else np.asarray(weights)[order].sum()
    return loss_sum / batches, correct / total, grads, (state1, state2, step)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    layout = Layout((30, 16, 12, 10))
    pixels = rng.integers(0, 256, size=(200, 30), dtype=np.uint8)
    labels = rng.integers(0, 10, 200)
    return layout, pixels, labels, rng.permutation(200)


CLASS_LOSSES = TASK_LOSSES["classification"]


@pytest.mark.parametrize("optimizer,activation,loss",
                         list(itertools.product(OPTIMIZERS, ACTIVATIONS, CLASS_LOSSES)))
def test_two_epochs_match_reference(problem, optimizer, activation, loss):
    layout, pixels, labels, order = problem
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold_optimizer = ref.Optimizer(optimizer, layers, HYPER)
    state = None
    for epoch_order in (order, order[::-1].copy()):  # 2 epochs, 7 batches each (last of 8)
        gold_loss, gold_acc = ref.train_epoch(layers, gold_optimizer, x, labels, epoch_order,
                                              32, activation, loss)
        mine_loss, mine_acc, _, state = kernel_epoch(params, layout, pixels, labels, epoch_order,
                                                     32, activation, loss, optimizer, state=state)
        assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
        assert mine_acc == gold_acc
    assert state[2] == gold_optimizer.t == 14
    assert relative_error(params, flatten(layers)) < TIGHT
    assert not np.allclose(params, init_params(layout, "Xavier", np.random.default_rng(1),
                                               np.float64)), "the parameters must have moved"


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("activation,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_every_loss_and_weights_train_like_reference(problem, activation, loss, weighted):
    """Every output kind and loss (classes, regression, multilabel), with and without row
    weights: two epochs of the compiled epoch (two shards, a short last batch) against the
    NumPy twin, float64: losses, accuracies, parameters."""
    layout, pixels, _, order = problem
    rng = np.random.default_rng(21)
    y = sample_targets(loss, rng, len(pixels), 10)
    weights = rng.uniform(0.2, 3.0, len(pixels)) if weighted else None
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold_optimizer = ref.Optimizer("adam", layers, HYPER)
    state = None
    regime = dict(huber_delta=0.7)
    for epoch_order in (order, order[::-1].copy()):
        gold_loss, gold_acc = ref.train_epoch(layers, gold_optimizer, x, y, epoch_order, 32,
                                              activation, loss, regime, weights)
        mine_loss, mine_acc, _, state = kernel_epoch(params, layout, pixels, y, epoch_order, 32,
                                                     activation, loss, "adam", state=state,
                                                     shards=2, regime=regime, weights=weights)
        assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
        assert mine_acc == pytest.approx(gold_acc, rel=TIGHT, abs=1e-15)
    assert relative_error(params, flatten(layers)) < TIGHT


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_and_backward_match_reference(activation):
    rng = np.random.default_rng(3)
    code = ACTIVATIONS.index(activation)
    z_in = rng.normal(size=(9, 13)) * 2
    a_in = ref.activate(activation, z_in, SLOPE)
    weights, bias = rng.normal(size=(13, 6)), rng.normal(size=6)
    gold_z = a_in @ weights + bias
    out = np.empty((9, 6))
    dense_forward(out, a_in, weights, bias, code, SLOPE)
    assert relative_error(out, ref.activate(activation, gold_z, SLOPE)) < TIGHT
    if needs_pre_activations(code):  # the training pass of GELU and SiLU keeps z too
        kept_out, z = np.empty((9, 6)), np.empty((9, 6))
        dense_forward_keeping_z(kept_out, z, a_in, weights, bias, code, SLOPE)
        assert np.array_equal(kept_out, out)
        assert relative_error(z, gold_z) < TIGHT

    dz = rng.normal(size=(9, 6))
    in_kept = ref.derivative_input(activation, z_in, SLOPE)  # the output, or z_in
    dweights, dbias, dz_in = np.empty((13, 6)), np.empty(6), np.empty((9, 13))
    dense_backward(dweights, dbias, dz_in, dz, a_in, weights, code, SLOPE, True, in_kept, a_in,
                   False, a_in[:0], a_in[:0])
    assert relative_error(dweights, a_in.T @ dz) < TIGHT
    assert relative_error(dbias, dz.sum(axis=0)) < TIGHT
    want = (dz @ weights.T) * ref.activation_derivative(activation, in_kept, SLOPE)
    if activation == "ReLU":
        assert np.array_equal(dz_in == 0, want == 0)
    assert relative_error(dz_in, want) < TIGHT


@pytest.mark.parametrize("dtype,tolerance", [(np.float64, TIGHT), (np.float32, 1e-5)])
def test_tiled_matmul_matches_numpy(dtype, tolerance):
    """The register-blocked tile (kernels/gemm.py, shaped for this CPU) on every row
    remainder (1 to two tiles and one more row, and a shard's 16, a batch's 32 and 64),
    several tile columns, and x both as rows and as a transposed view (the dW product
    a_in.T @ dz)."""
    rng = np.random.default_rng(11)
    tile_cols = TILE_BYTES // np.dtype(dtype).itemsize
    for rows in [*range(1, 2 * MAX_TILE_ROWS + 2), 16, 32, 64]:
        for depth, cols in [(1, tile_cols), (30, 2 * tile_cols), (97, 4 * tile_cols)]:
            x = rng.normal(size=(rows, depth)).astype(dtype)
            w = rng.normal(size=(depth, cols)).astype(dtype)
            out = np.full((rows, cols), np.nan, dtype)
            tiled_matmul(out, x, w)
            assert relative_error(out, x @ w) < tolerance, (rows, depth, cols)
            dz = rng.normal(size=(rows, cols)).astype(dtype)
            dweights = np.full((depth, cols), np.nan, dtype)
            tiled_matmul(dweights, x.T, dz)
            assert relative_error(dweights, x.T @ dz) < tolerance, (rows, depth, cols)


TILE_PROGRAM = """
import sys
import numpy as np
from fastmlp.kernels.gemm import TILE_BYTES, tiled_matmul
rng = np.random.default_rng(13)
w = rng.normal(size=(97, 64)).astype(np.float32)
results = {}
for rows in range(1, 30):
    x = rng.normal(size=(rows, 97)).astype(np.float32)
    out = np.empty((rows, 64), np.float32)
    tiled_matmul(out, x, w)
    results[f"rows{rows}"] = out
np.savez(sys.argv[1], tile_bytes=TILE_BYTES, **results)
"""


def test_the_tile_gives_the_same_bits_on_avx2_and_avx512(tmp_path):
    """The tile shaped for AVX2 (forced by FASTMLP_VECTOR_BYTES=32: the fallback path) and
    for this CPU sum each product in the same order with one FMA per term: the same bits.
    (On an AVX2 machine both are the AVX2 shape.)"""
    import os
    import subprocess
    import sys

    outcomes = {}
    for vector in ("32", "native"):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        env.pop("FASTMLP_VECTOR_BYTES", None)
        if vector == "32":
            env["FASTMLP_VECTOR_BYTES"] = "32"
        path = tmp_path / f"{vector}.npz"
        done = subprocess.run([sys.executable, "-c", TILE_PROGRAM, str(path)], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        outcomes[vector] = dict(np.load(path))
    assert int(outcomes["32"]["tile_bytes"]) == 64
    assert int(outcomes["native"]["tile_bytes"]) == TILE_BYTES
    for rows in range(1, 30):
        assert np.array_equal(outcomes["32"][f"rows{rows}"], outcomes["native"][f"rows{rows}"])


@pytest.mark.parametrize("rows,n_in,n_out,tiled", [
    (16, 784, 64, True),      # a batch-32 shard's first layer
    (32, 64, 64, True),
    (256, 64, 64, True),      # thin: 64 deep
    (32, 64, 10, False),      # the output layer: not a whole tile wide
    (64, 784, 64, True),      # a batch-128 shard
    (SMALL_ROWS, 784, 64, True),  # the most rows the tile takes on this CPU
    (SMALL_ROWS + 1, 784, 64, False),
    (32, 784, 512, 784 * 512 <= SMALL_WEIGHTS),  # past AVX2's half an L2 cache of weights
    (32, 2048, 1024, False),  # 8 MiB of weights: past the limit of any L2 cache of today
])
def test_matmul_takes_the_tile_only_where_it_is_faster(rows, n_in, n_out, tiled):
    """Both products of a dense layer: the forward a_in @ W and the weight gradient
    a_in.T @ dz, in float32 (float64 always goes to BLAS)."""
    rng = np.random.default_rng(12)
    a_in = rng.random((rows, n_in), dtype=np.float32)
    weights = rng.normal(size=(n_in, n_out)).astype(np.float32)
    dz = rng.normal(size=(rows, n_out)).astype(np.float32)
    out, dweights = np.zeros((rows, n_out), np.float32), np.zeros((n_in, n_out), np.float32)
    assert tiles_suit(out, a_in, weights) == tiled
    assert tiles_suit(dweights, a_in.T, dz) == tiled
    assert not tiles_suit(out.astype(np.float64), a_in.astype(np.float64),
                          weights.astype(np.float64))
    matmul(out, a_in, weights)
    assert relative_error(out, a_in.astype(np.float64) @ weights) < 1e-5
    matmul(dweights, a_in.T, dz)
    assert relative_error(dweights, a_in.T.astype(np.float64) @ dz) < 1e-5


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_kernels_match_reference(activation):
    rng = np.random.default_rng(4)
    code = ACTIVATIONS.index(activation)
    z, bias = rng.normal(size=(5, 7)) * 4, rng.normal(size=7)
    mine = z.copy()
    bias_activate(mine, bias, code, SLOPE)
    assert relative_error(mine, ref.activate(activation, z + bias, SLOPE)) < TIGHT
    kept = ref.derivative_input(activation, z + bias, SLOPE)
    assert needs_pre_activations(code) == (activation in NEEDS_PRE_ACTIVATIONS)
    if needs_pre_activations(code):
        kept_z, out = z.copy(), np.empty_like(z)
        bias_activate_keeping_z(out, kept_z, bias, code, SLOPE)
        assert np.array_equal(out, mine) and np.array_equal(kept_z, z + bias)
    grad = rng.normal(size=(5, 7))
    scaled = grad.copy()
    scale_by_derivative(scaled, kept, code, SLOPE)
    gold = grad * ref.activation_derivative(activation, kept, SLOPE)
    assert relative_error(scaled, gold) < TIGHT


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_derivatives_match_finite_differences(activation):
    """The twin's act' (read from the output, or from z for GELU and SiLU) is the slope of
    its act, away from ReLU's and LeakyReLU's kink at 0."""
    z = np.linspace(-6, 6, 1201)
    z = z[np.abs(z) > 1e-3]
    step = 1e-6
    numeric = (ref.activate(activation, z + step, SLOPE)
               - ref.activate(activation, z - step, SLOPE)) / (2 * step)
    kept = ref.derivative_input(activation, z, SLOPE)
    assert np.max(np.abs(ref.activation_derivative(activation, kept, SLOPE) - numeric)) < 1e-8


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_kernel_matches_reference(loss, weighted):
    """Every loss, each row's weight in the loss, its gradient and the rows counted right."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(11, 10)) * (5 if LOSS_OUTPUT[loss] == "softmax" else 1.5)
    y = sample_targets(loss, rng, 11, 10)
    weights = rng.uniform(0.1, 3.0, 11) if weighted else None
    labels, targets, kernel_weights = kernel_targets(y, weights)
    dlogits = np.empty_like(logits)
    total = 11.0 if weights is None else weights.sum()
    mine_loss, correct = loss_backward(dlogits, logits, np.arange(11), labels, targets,
                                       kernel_weights, LOSSES.index(loss), total, 0.0, 0.7)
    gold_loss, gold_grad = ref.loss_and_grad(loss, logits, y, 0.0, weights, delta=0.7)
    assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
    assert relative_error(dlogits, gold_grad) < TIGHT
    w = np.ones(11) if weights is None else weights
    assert correct == pytest.approx((w * ref.right_rows(loss, logits, y)).sum(), rel=TIGHT)


def test_a_row_of_weight_two_counts_as_the_row_given_twice():
    """scikit-learn's definition of a sample weight, in the loss and its gradient."""
    rng = np.random.default_rng(15)
    for loss in LOSSES:
        logits = rng.normal(size=(5, 3))
        y = sample_targets(loss, rng, 5, 3)
        twice = np.concatenate([logits, logits[:1]]), np.concatenate([y, y[:1]])
        results = []
        for z, yy, weights in ((logits, y, np.array([2.0, 1, 1, 1, 1])), (*twice, None)):
            labels, targets, kernel_weights = kernel_targets(yy, weights)
            dlogits = np.empty_like(z)
            value, _ = loss_backward(dlogits, z, np.arange(len(z)), labels, targets,
                                     kernel_weights, LOSSES.index(loss), 6.0, 0.0, 1.0)
            results.append((value, dlogits[:5].copy(), dlogits[5:]))
        (weighted, weighted_grad, _), (repeated, repeated_grad, extra) = results
        assert weighted == pytest.approx(repeated, rel=TIGHT), loss
        repeated_grad[0] += extra[0]  # the repeated row's two gradients, together
        assert relative_error(weighted_grad, repeated_grad) < TIGHT, loss


@pytest.mark.parametrize("output", OUTPUTS)
def test_output_values_match_reference(output):
    from fastmlp.kernels.losses import output_values

    loss = next(name for name, kind in LOSS_OUTPUT.items() if kind == output)
    logits = np.random.default_rng(16).normal(size=(7, 4)) * 3
    mine = np.empty_like(logits)
    output_values(mine, logits, OUTPUTS.index(output))
    assert relative_error(mine, ref.output_values(loss, logits)) < TIGHT


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0] + [0.0] * 7])
    dlogits = np.empty_like(logits)
    loss, _ = loss_backward(dlogits, logits, np.arange(1), np.array([1]), NO_TARGETS,
                            NO_WEIGHTS, LOSSES.index("cross_entropy"), 1.0, 0.0, 1.0)
    assert loss == pytest.approx(2000.0)
    assert np.isfinite(dlogits).all()


def test_binary_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[800.0, -800.0, 0.0]])
    dlogits = np.empty_like(logits)
    loss, _ = loss_backward(dlogits, logits, np.arange(1), NO_LABELS,
                            np.array([[0.0, 1.0, 1.0]]), NO_WEIGHTS,
                            LOSSES.index("binary_cross_entropy"), 1.0, 0.0, 1.0)
    assert loss == pytest.approx(1600.0 + np.log(2))
    assert np.isfinite(dlogits).all()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_update_matches_reference(optimizer):
    rng = np.random.default_rng(6)
    layout = Layout((5, 4, 3))
    params = rng.normal(size=layout.num_params)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold = ref.Optimizer(optimizer, layers, HYPER)
    state1, state2 = np.zeros_like(params), np.zeros_like(params)
    for step in range(1, 6):
        grads = rng.normal(size=layout.num_params)
        gold.step(layers, [(dw.copy(), db.copy()) for dw, db in layout.views(grads)])
        optimizer_update(params, state1, state2, grads, layout.decay_segments(), step,
                         OPTIMIZERS.index(optimizer), kernel_arrays("ReLU", "cross_entropy",
                                                                    optimizer)[1],
                         HYPER["learning_rate"], 0, params.size)
    assert relative_error(params, flatten(layers)) < TIGHT


def test_weight_decay_skips_biases():
    layout = Layout((3, 2))
    params = np.ones(layout.num_params)
    optimizer_update(params, np.zeros_like(params), np.zeros_like(params),
                     np.zeros_like(params), layout.decay_segments(), 1, OPTIMIZERS.index("sgd"),
                     kernel_arrays("ReLU", "cross_entropy", "sgd",
                                   dict(HYPER, learning_rate=0.1, weight_decay=0.5))[1], 0.1,
                     0, params.size)
    weights, bias = layout.views(params)[0]
    assert np.allclose(weights, 1 - 0.1 * 0.5) and np.allclose(bias, 1.0)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("activation,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_gradients_match_finite_differences(activation, loss, weighted):
    """Kernel and reference gradients of one batch against centred differences of the loss,
    for every loss (every output kind), with and without row weights."""
    rng = np.random.default_rng(8)
    layout = Layout((6, 5, 4, 10))
    params = init_params(layout, "Xavier", rng, np.float64) + rng.normal(
        scale=0.1, size=layout.num_params)  # non-zero biases too
    pixels = rng.integers(0, 256, size=(7, 6), dtype=np.uint8)
    labels = sample_targets(loss, rng, 7, 10)
    weights = rng.uniform(0.2, 3.0, 7) if weighted else None
    x = scale_pixels(pixels, np.float64)
    delta = 0.05  # small: some huber residuals on each side of it

    def batch_loss(flat):
        return ref.gradients(layout.views(flat.copy()), x, labels, activation, loss,
                             weights=weights, delta=delta)[0]

    numeric = centred_differences(batch_loss, params)

    _, gold_grads, _ = ref.gradients(layout.views(params.copy()), x, labels, activation, loss,
                                     weights=weights, delta=delta)
    no_step = dict(HYPER, weight_decay=0.0)  # grads: the batch's data gradient
    _, _, kernel_grads, _ = kernel_epoch(params.copy(), layout, pixels, labels, np.arange(7), 7,
                                         activation, loss, "sgd", hyper=no_step,
                                         regime=dict(huber_delta=delta), weights=weights)
    assert relative_error(flatten(gold_grads), numeric) < 1e-6
    assert relative_error(kernel_grads, numeric) < 1e-6


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("activation,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_inference_matches_reference(problem, activation, loss, workers):
    """The one forward pass of inference: weighted loss, argmaxes and the output layer's
    values over more rows than one chunk, as the NumPy twin computes them, for every loss
    and any number of workers."""
    layout, pixels, _, _ = problem
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "He", np.random.default_rng(2), np.float64)
    x_big = np.tile(x, (6, 1))  # 1200 rows: more than one inference chunk
    rng = np.random.default_rng(22)
    y_big = sample_targets(loss, rng, len(x_big), 10)
    weights = rng.uniform(0.2, 3.0, len(x_big))
    labels, targets, kernel_weights = kernel_targets(y_big, weights)
    predictions = np.empty(len(x_big), dtype=np.int64)
    outputs = np.empty((len(x_big), 10))
    codes, hyper = kernel_arrays(activation, loss, "sgd",
                                 regime=dict(huber_delta=0.7, leaky_slope=SLOPE))
    mine = infer(outputs, predictions, x_big, labels, targets, kernel_weights, params,
                 layout.arrays(), codes, hyper, workers)
    gold_loss, _, gold_predictions = ref.evaluate(layout.views(params), x_big, y_big,
                                                  activation, loss, weights, delta=0.7,
                                                  leaky_slope=SLOPE)
    gold_outputs, _ = ref.predict(layout.views(params), x_big, activation, loss, SLOPE)
    assert mine == pytest.approx(gold_loss, rel=TIGHT)
    assert np.array_equal(predictions, gold_predictions)
    assert relative_error(outputs, gold_outputs) < TIGHT
    # without labels (predict): no loss, the same outputs; without outputs (evaluate): the loss
    alone = np.empty_like(outputs)
    assert infer(alone, predictions, x_big, labels[:0], targets[:0], kernel_weights, params,
                 layout.arrays(), codes, hyper, workers) == 0.0
    assert np.array_equal(alone, outputs)
    assert infer(outputs[:0], predictions, x_big, labels, targets, kernel_weights, params,
                 layout.arrays(), codes, hyper, workers) == mine


def test_kernel_inputs_come_only_from_a_validated_config():
    """No mapping, no unchecked config: a bad value can never reach the kernels."""
    import dataclasses

    with pytest.raises(TypeError, match="validated TrainConfig"):
        kernel_inputs({"activation": "ReLU", "loss": "cross_entropy"})
    with pytest.raises(TypeError, match="validated TrainConfig"):
        kernel_inputs(TrainConfig(activation="relu"))
    checked = TrainConfig(activation="relu", augment="shift:2,flip", epochs=3,
                          warmup_epochs=0.5, learning_rate=0.25).validated()
    with pytest.raises(TypeError, match="validated TrainConfig"):
        kernel_inputs(dataclasses.replace(checked, learning_rate=-1.0))
    codes, hyper = kernel_inputs(checked, steps_per_epoch=10, image_width=28)
    assert dict(zip(CODES, codes.tolist())) == {
        "activation": ACTIVATIONS.index("ReLU"), "loss": LOSSES.index("cross_entropy"),
        "optimizer": OPTIMIZERS.index("adam"), "lr_schedule": SCHEDULES.index("constant"),
        "shift": 2, "flip": 1, "image_width": 28, "output": OUTPUTS.index("softmax"),
        "residual": 0, "norm": 0}
    from fastmlp.kernels.interface import HP_LEARNING_RATE, HP_TOTAL_STEPS, HP_WARMUP_STEPS

    assert (hyper[HP_LEARNING_RATE], hyper[HP_TOTAL_STEPS], hyper[HP_WARMUP_STEPS]) == (
        0.25, 30.0, 5.0)


@pytest.mark.parametrize("entry", [CODE_ACTIVATION, CODE_LOSS, CODE_OPTIMIZER, CODE_SCHEDULE])
def test_an_unknown_code_raises_instead_of_training_as_another(problem, entry):
    """A code outside its table (a name added to a table without its kernel branch) stops
    the epoch and inference before any work: it never falls through to another branch."""
    layout, pixels, labels, order = problem
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    codes, hyper = kernel_arrays("tanh", "cross_entropy", "adam")
    codes[entry] = 99
    buffers = np.stack([params.copy(), np.zeros_like(params), np.zeros_like(params),
                        np.zeros_like(params)])
    with pytest.raises(ValueError, match="outside its table"):
        train_epoch(buffers, np.zeros(1, np.int64), 0, pixels, labels, NO_TARGETS, NO_WEIGHTS,
                    order, 32, layout.arrays(), codes, hyper, 2)
    assert np.array_equal(buffers[0], params)  # nothing trained
    with pytest.raises(ValueError, match="outside its table"):
        infer(np.empty((200, 10)), np.empty(200, np.int64), scale_pixels(pixels, np.float64),
              labels, NO_TARGETS, NO_WEIGHTS, params, layout.arrays(), codes, hyper, 2)


def test_every_kernel_branch_names_its_code():
    """Called directly with an unknown code, each branching kernel raises (its last branch is
    its own table's last name, not an `else` that catches everything)."""
    z, bias = np.ones((2, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_activate(z, bias, len(ACTIVATIONS), SLOPE)
    with pytest.raises(ValueError, match="unknown activation"):
        scale_by_derivative(z, z, len(ACTIVATIONS), SLOPE)
    with pytest.raises(ValueError, match="unknown activation"):  # it keeps z for GELU, SiLU only
        bias_activate_keeping_z(z.copy(), z, bias, ACTIVATIONS.index("ReLU"), SLOPE)
    with pytest.raises(ValueError, match="unknown loss"):
        loss_backward(np.empty((2, 3)), z, np.arange(2), np.zeros(2, np.int64), NO_TARGETS,
                      NO_WEIGHTS, len(LOSSES), 2.0, 0.0, 1.0)
    layout = Layout((3, 2))
    params = np.ones(layout.num_params)
    _, hyper = kernel_arrays("ReLU", "cross_entropy", "sgd")
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizer_update(params, params.copy(), params.copy(), params.copy(),
                         layout.decay_segments(), 1, len(OPTIMIZERS), hyper, 0.1, 0, params.size)
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        scheduled_lr(0.1, len(SCHEDULES), 1.0, 10.0, 0.0)


def test_weight_decay_gradient_matches_finite_differences():
    """One sgd step of the kernel moves the weights by lr * d/dW [loss + w_d/2 ||W||^2] and
    the biases by lr * d/db loss: centred differences of that objective."""
    rng = np.random.default_rng(9)
    layout = Layout((6, 5, 10))
    params = init_params(layout, "Xavier", rng, np.float64) + rng.normal(
        scale=0.1, size=layout.num_params)
    pixels, labels = rng.integers(0, 256, size=(7, 6), dtype=np.uint8), rng.integers(0, 10, 7)
    x = scale_pixels(pixels, np.float64)
    decay, lr = 0.3, 1e-3
    weight_mask = np.zeros(layout.num_params, dtype=bool)
    for start, end, is_weight in layout.decay_segments():
        weight_mask[start:end] = bool(is_weight)

    def objective(flat):
        data_loss = ref.gradients(layout.views(flat.copy()), x, labels, "tanh",
                                  "cross_entropy")[0]
        return data_loss + decay / 2 * np.sum(flat[weight_mask] ** 2)

    numeric = centred_differences(objective, params)
    moved = params.copy()
    kernel_epoch(moved, layout, pixels, labels, np.arange(7), 7, "tanh", "cross_entropy", "sgd",
                 hyper=dict(HYPER, learning_rate=lr, weight_decay=decay))
    assert relative_error((params - moved) / lr, numeric) < 1e-6


@pytest.mark.parametrize("optimizer,activation", [("adam", "ReLU"), ("nadam", "tanh"),
                                                  ("momentum", "sigmoid"), ("sgd", "identity"),
                                                  ("adamw", "GELU"), ("rmsprop", "SiLU"),
                                                  ("nag", "LeakyReLU")])
def test_float32_epoch_tracks_float64_reference(problem, optimizer, activation):
    layout, pixels, labels, order = problem
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold_optimizer = ref.Optimizer(optimizer, layers, HYPER)
    params32 = params.astype(np.float32)
    state = None
    for epoch_order in (order, order[::-1].copy()):  # 2 epochs, as in the float64 parity
        gold_loss, _ = ref.train_epoch(layers, gold_optimizer, x, labels, epoch_order, 32,
                                       activation, "cross_entropy")
        mine_loss, _, _, state = kernel_epoch(params32, layout, pixels, labels, epoch_order, 32,
                                              activation, "cross_entropy", optimizer,
                                              state=state)
        assert mine_loss == pytest.approx(gold_loss, rel=1e-4)
    assert relative_error(params32.astype(np.float64), flatten(layers)) < 1e-4


def test_diverging_epoch_stops_early(problem):
    layout, pixels, labels, order = problem
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    blow_up = dict(HYPER, learning_rate=1e300, weight_decay=0.0)
    _, _, _, (_, _, steps) = kernel_epoch(params, layout, pixels, labels, order, 32, "identity",
                                          "cross_entropy", "sgd", hyper=blow_up)
    assert steps < 7


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_activations_are_accurate(activation):
    """float32 uses vectorised exp/tanh/normal CDF (kernels/fastmath.py): the activations
    and their derivatives within float32 rounding (absolute below 1, relative above)."""
    code = ACTIVATIONS.index(activation)
    z = np.linspace(-120, 120, 24001, dtype=np.float32).reshape(1, -1)
    z = np.concatenate([z, np.linspace(-8, 8, 24001, dtype=np.float32).reshape(1, -1)])
    z64 = z.astype(np.float64)
    mine = z.copy()
    bias_activate(mine, np.zeros(z.shape[1], np.float32), code, np.float32(SLOPE))
    gold = ref.activate(activation, z64, np.float64(np.float32(SLOPE)))
    assert np.max(np.abs(mine - gold) / np.maximum(1, np.abs(gold))) < 3e-7
    kept = z if needs_pre_activations(code) else mine
    scaled = np.ones_like(z)
    scale_by_derivative(scaled, kept, code, np.float32(SLOPE))
    slope = np.float64(np.float32(SLOPE))  # the slope as the float32 kernel holds it
    gold = ref.activation_derivative(activation, ref.derivative_input(activation, z64, slope),
                                     slope)
    away_from_kinks = np.abs(z64) > 1e-6
    assert np.max(np.abs(scaled - gold)[away_from_kinks]) < 1e-6


def test_float32_exp_is_accurate():
    from numba import njit

    from fastmlp.kernels.fastmath import fast_exp

    @njit
    def exp_all(out, x):
        for i in range(x.size):
            out[i] = fast_exp(x[i])

    x = np.linspace(-87, 88, 350001, dtype=np.float32)
    out = np.empty_like(x)
    exp_all(out, x)
    gold = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - gold) / gold) < 2e-7


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_epoch_matches_reference(problem, shards):
    """Batches split by rows over threads (uneven splits, a short last batch) give the
    reference's parameters."""
    layout, pixels, labels, order = problem
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold_loss, gold_acc = ref.train_epoch(layers, ref.Optimizer("nadam", layers, HYPER), x,
                                          labels, order, 32, "tanh", "mean_squared_error")
    mine_loss, mine_acc, _, _ = kernel_epoch(params, layout, pixels, labels, order, 32, "tanh",
                                             "mean_squared_error", "nadam", shards=shards)
    assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
    assert mine_acc == gold_acc
    assert relative_error(params, flatten(layers)) < TIGHT


def test_float_features_epoch_matches_reference(problem):
    """Float inputs (a table of features, not pixels) are used as they are: no 1/255."""
    layout, pixels, labels, order = problem
    features = np.random.default_rng(11).normal(size=pixels.shape) * 3
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold_loss, gold_acc = ref.train_epoch(layers, ref.Optimizer("adam", layers, HYPER),
                                          features, labels, order, 32, "tanh", "cross_entropy")
    mine_loss, mine_acc, _, _ = kernel_epoch(params, layout, features, labels, order, 32, "tanh",
                                             "cross_entropy", "adam")
    assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
    assert mine_acc == gold_acc
    assert relative_error(params, flatten(layers)) < TIGHT


# ----------------------------------------------------------------------------- training additions
# Dropout, augmentation, schedules and label smoothing: the compiled epoch against the NumPy
# twin, drawing the same counter-based random numbers (kernels/random.py).

REGIMES = {
    "dropout": dict(dropout=0.3, input_dropout=0.2, seed=5),
    "augment": dict(shift=2, flip=1, image_width=5, seed=6),  # the problem's rows: 6x5 images
    "smoothing": dict(label_smoothing=0.1),
    "cosine-warmup": dict(lr_schedule="cosine", total_steps=14, warmup_steps=3),
    "step": dict(lr_schedule="step", total_steps=14),
    "onecycle": dict(lr_schedule="onecycle", total_steps=14),
    "all": dict(dropout=0.25, input_dropout=0.1, shift=1, flip=1, image_width=5,
                label_smoothing=0.05, lr_schedule="cosine", total_steps=14, warmup_steps=2,
                seed=9),
    # the deformations of the gather (kernels/deform.py), alone and with everything else
    "rotate": dict(rotate=40.0, image_width=5, seed=4),
    "scale": dict(scale=0.3, image_width=5, seed=4),
    "shear": dict(shear=25.0, image_width=5, seed=4),
    "elastic": dict(elastic=2.0, elastic_sigma=1.5, image_width=5, seed=4),
    "deform-all": dict(rotate=15.0, scale=0.1, shear=10.0, elastic=1.5, elastic_sigma=0.8,
                       shift=1, flip=1, image_width=5, dropout=0.2, input_dropout=0.1,
                       seed=8),
}


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("name", list(REGIMES))
def test_training_additions_match_reference(problem, name, shards):
    """Two epochs (uneven shards, a short last batch): same losses, accuracies, parameters."""
    layout, pixels, labels, order = problem
    regime = REGIMES[name]
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    hyper = dict(HYPER, **{k: v for k, v in regime.items() if k in ("total_steps",
                                                                   "warmup_steps")})
    gold_optimizer = ref.Optimizer("adam", layers, hyper,
                                   schedule=regime.get("lr_schedule", "constant"))
    gold_regime = {k: v for k, v in regime.items()
                   if k not in ("lr_schedule", "total_steps", "warmup_steps")}
    state = None
    for epoch_order in (order, order[::-1].copy()):
        gold_loss, gold_acc = ref.train_epoch(layers, gold_optimizer, x, labels, epoch_order, 32,
                                              "tanh", "cross_entropy", gold_regime)
        mine_loss, mine_acc, _, state = kernel_epoch(params, layout, pixels, labels, epoch_order,
                                                     32, "tanh", "cross_entropy", "adam",
                                                     state=state, shards=shards, regime=regime)
        assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
        assert mine_acc == gold_acc
    assert relative_error(params, flatten(layers)) < TIGHT


NEW_ACTIVATIONS = ("GELU", "SiLU", "LeakyReLU")  # issue N


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["kept", "kept-and-dropped"])
@pytest.mark.parametrize("activation", NEW_ACTIVATIONS)
def test_new_activations_train_like_reference(problem, activation, dropout, shards):
    """GELU and SiLU keep their pre-activations for the backward pass, with and without
    dropout (which keeps its own buffers); LeakyReLU reads a slope that is not the default.
    Two epochs against the twin: losses, accuracies, parameters."""
    layout, pixels, labels, order = problem
    two_epochs_like_the_twin(layout, pixels, labels, order, activation, "adamw", shards,
                             dict(dropout=dropout, input_dropout=0.1, seed=5, leaky_slope=SLOPE))


def two_epochs_like_the_twin(layout, pixels, labels, order, activation, optimizer, shards,
                             regime, tolerance=TIGHT) -> np.ndarray:
    """Two epochs (the second in the reverse order) of the compiled epoch and of the twin
    from the same He start: the same losses, accuracies and parameters; returns the
    kernel's parameters."""
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "He", np.random.default_rng(1), np.float64)
    layers = [tuple(p.copy() for p in layer) for layer in layout.views(params)]
    gold_optimizer = ref.Optimizer(optimizer, layers, HYPER)
    state = None
    for epoch_order in (order, order[::-1].copy()):
        gold_loss, gold_acc = ref.train_epoch(layers, gold_optimizer, x, labels, epoch_order, 32,
                                              activation, "cross_entropy", regime)
        mine_loss, mine_acc, _, state = kernel_epoch(params, layout, pixels, labels, epoch_order,
                                                     32, activation, "cross_entropy", optimizer,
                                                     state=state, shards=shards, regime=regime)
        assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
        assert mine_acc == gold_acc
    assert relative_error(params, flatten(layers)) < tolerance
    return params


def test_leaky_slope_changes_only_leaky_relu(problem):
    """The slope reaches LeakyReLU's kernels (another slope, other parameters) and no other
    activation's (the same parameters, bit for bit)."""
    layout, pixels, labels, order = problem
    start = init_params(layout, "He", np.random.default_rng(1), np.float64)
    for activation, differs in (("LeakyReLU", True), ("GELU", False), ("ReLU", False)):
        trained = []
        for slope in (LEAKY_SLOPE, 0.3):
            params = start.copy()
            kernel_epoch(params, layout, pixels, labels, order, 32, activation, "cross_entropy",
                         "adam", regime=dict(leaky_slope=slope))
            trained.append(params)
        assert (not np.array_equal(*trained)) == differs, activation


RESIDUAL_LAYOUT = Layout((30, 16, 16, 12, 12, 12, 10))  # skips into layers 2, 4 and 5


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropped"])
@pytest.mark.parametrize("activation", ["ReLU", "tanh", "GELU"])
def test_residual_connections_train_like_reference(problem, activation, dropout, shards):
    """--residual: every hidden layer as wide as the one before adds its input (two skips in
    a row, one layer of another width between), with and without dropout, read from the
    output (ReLU, tanh) or from Z (GELU). Two epochs against the twin; then inference."""
    _, pixels, labels, order = problem
    layout = RESIDUAL_LAYOUT
    assert ref.skips(layout.views(np.zeros(layout.num_params)), True) == [
        False, True, False, True, True, False]
    params = two_epochs_like_the_twin(layout, pixels, labels, order, activation, "adam", shards,
                                      dict(dropout=dropout, seed=5, residual=True))
    x = scale_pixels(pixels, np.float64)
    outputs, predictions = np.empty((len(x), 10)), np.empty(len(x), dtype=np.int64)
    codes, hyper = kernel_arrays(activation, "cross_entropy", "adam", regime=dict(residual=True))
    infer(outputs, predictions, x, labels[:0], np.empty((0, 0)), np.empty(0), params,
          layout.arrays(), codes, hyper, shards)
    gold_outputs, gold_predictions = ref.predict(layout.views(params), x, activation,
                                                 residual=True)
    assert relative_error(outputs, gold_outputs) < TIGHT
    assert np.array_equal(predictions, gold_predictions)
    plain, _ = ref.predict(layout.views(params), x, activation)
    assert relative_error(outputs, plain) > 1e-3  # the skips change what comes out


@pytest.mark.parametrize("activation", ["ReLU", "sigmoid", "SiLU"])
def test_residual_gradients_match_finite_differences(activation):
    """With the step's dropout masks held fixed, kernel and reference gradients of a net
    with skips are the derivative of its batch loss."""
    rng = np.random.default_rng(13)
    layout = Layout((6, 5, 5, 4, 4, 10))
    params = init_params(layout, "Xavier", rng, np.float64) + rng.normal(
        scale=0.1, size=layout.num_params)
    pixels, labels = rng.integers(0, 256, size=(7, 6), dtype=np.uint8), rng.integers(0, 10, 7)
    x = scale_pixels(pixels, np.float64)
    scales = [ref.dropout_scales(0.3, 3, 1, 1 + l, np.arange(7), width)
              for l, width in enumerate((5, 5, 4, 4))]

    assert_gradients_are_differences(layout, params, x, pixels, labels, activation, scales,
                                     dict(dropout=0.3, seed=3, residual=True), residual=True)


def assert_gradients_are_differences(layout, params, x, pixels, labels, activation, scales,
                                     regime, **twin_options):
    """The twin's gradient of one cross_entropy batch (x, the pixels scaled and input-dropped
    as the kernel does it; scales: the step's dropout masks, held fixed) and the kernel's
    (one sgd step over the whole batch, with regime) are its loss's centred differences."""
    def batch_loss(flat):
        return ref.gradients(layout.views(flat.copy()), x, labels, activation, "cross_entropy",
                             scales, **twin_options)[0]

    numeric = centred_differences(batch_loss, params)
    _, gold_grads, _ = ref.gradients(layout.views(params.copy()), x, labels, activation,
                                     "cross_entropy", scales, **twin_options)
    no_step = dict(HYPER, weight_decay=0.0)  # grads: the batch's data gradient
    _, _, kernel_grads, _ = kernel_epoch(params.copy(), layout, pixels, labels,
                                         np.arange(len(x)), len(x), activation, "cross_entropy",
                                         "sgd", hyper=no_step, regime=regime)
    assert relative_error(flatten(gold_grads), numeric) < 1e-6
    assert relative_error(kernel_grads, numeric) < 1e-6


NORM_SIZES = (30, 16, 16, 12, 10)
NORMS_ON = ("layer", "batch")


@pytest.mark.parametrize("norm,vectors", [("layer", 2), ("batch", 4)])
def test_a_normed_layout_holds_its_vectors_per_hidden_unit(norm, vectors):
    """--norm: each hidden layer's (W, b, gamma, beta[, running mean, running variance]),
    gamma and the running variance starting at one, beta and the running mean at zero, none
    decayed; the output layer has none."""
    layout = Layout(NORM_SIZES, norm)
    params = init_params(layout, "He", np.random.default_rng(1), np.float64)
    layers = layout.views(params)
    assert [len(layer) for layer in layers] == [2 + vectors] * 3 + [2]
    assert layout.num_params == Layout(NORM_SIZES).num_params + vectors * (16 + 16 + 12)
    starts = (1.0, 0.0, 0.0, 1.0)[:vectors]
    assert all((vector == start).all() for layer in layers[:3]
               for vector, start in zip(layer[2:], starts))
    decayed = np.zeros(layout.num_params, dtype=bool)
    for start, end, is_weight in layout.decay_segments():
        decayed[start:end] = bool(is_weight)
    assert decayed.sum() == sum(layer[0].size for layer in layers)
    assert flatten(layers).size == layout.num_params


@pytest.mark.parametrize("norm", NORMS_ON)
@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("activation,regime", [
    ("ReLU", {}), ("tanh", dict(dropout=0.3, seed=5)), ("GELU", dict(dropout=0.3, seed=5)),
    ("LeakyReLU", dict(residual=True, leaky_slope=SLOPE)),
    ("SiLU", dict(residual=True, dropout=0.2, seed=6))],
    ids=["ReLU", "tanh-dropout", "GELU-dropout", "LeakyReLU-residual", "SiLU-residual-dropout"])
def test_normed_layers_train_like_reference(problem, activation, regime, shards, norm):
    """--norm layer and batch on every hidden layer: two epochs against the twin (read from
    the output or from the pre-activations, with dropout and skips); then inference
    (BatchNorm's with the running statistics the epochs moved), where the normalisation
    changes what comes out, on read-only parameters as a memory-mapped model has them."""
    _, pixels, labels, order = problem
    layout = Layout(NORM_SIZES, norm)
    regime = dict(regime, norm=norm)
    # BatchNorm makes the bias before it redundant: its gradient is 0 up to rounding, which
    # Adam divides by its epsilon (1e-8) into steps of about 1e-11 that kernel and twin
    # round apart
    params = two_epochs_like_the_twin(layout, pixels, labels, order, activation, "adamw",
                                      shards, regime, TIGHT if norm == "layer" else 1e-8)
    x = scale_pixels(pixels, np.float64)
    outputs, predictions = np.empty((len(x), 10)), np.empty(len(x), dtype=np.int64)
    codes, hyper = kernel_arrays(activation, "cross_entropy", "adamw", regime=regime)
    params.setflags(write=False)
    infer(outputs, predictions, x, labels[:0], np.empty((0, 0)), np.empty(0), params,
          layout.arrays(), codes, hyper, shards)
    residual = regime.get("residual", False)
    slope = regime.get("leaky_slope", LEAKY_SLOPE)
    layers = layout.views(params)
    if norm == "batch":  # 14 steps moved the running statistics off their start
        assert all(np.abs(layer[4]).min() > 0 and (layer[5] != 1).all() for layer in layers[:3])
    gold_outputs, gold_predictions = ref.predict(layers, x, activation, leaky_slope=slope,
                                                 residual=residual)
    assert relative_error(outputs, gold_outputs) < TIGHT
    assert np.array_equal(predictions, gold_predictions)
    unnormed, _ = ref.predict([layer[:2] for layer in layers], x, activation,
                              leaky_slope=slope, residual=residual)
    assert relative_error(outputs, unnormed) > 1e-3


@pytest.mark.parametrize("norm", NORMS_ON)
@pytest.mark.parametrize("activation,regime", [
    ("ReLU", {}), ("sigmoid", dict(dropout=0.3, seed=3)), ("SiLU", dict(residual=True)),
    ("tanh", dict(residual=True, dropout=0.3, seed=3))],
    ids=["ReLU", "sigmoid-dropout", "SiLU-residual", "tanh-residual-dropout"])
def test_normed_gradients_match_finite_differences(activation, regime, norm):
    """With the step's dropout masks held fixed, kernel and reference gradients of every W,
    b, gamma and beta of a LayerNorm or BatchNorm net (BatchNorm: the batch's statistics)
    are the derivative of its batch loss."""
    rng = np.random.default_rng(14)
    layout = Layout((6, 5, 5, 4, 10), norm)
    params = init_params(layout, "Xavier", rng, np.float64) + rng.normal(
        scale=0.1, size=layout.num_params)  # gamma and beta away from 1 and 0
    pixels, labels = rng.integers(0, 256, size=(7, 6), dtype=np.uint8), rng.integers(0, 10, 7)
    x = scale_pixels(pixels, np.float64)
    scales = None
    if regime.get("dropout"):
        scales = [ref.dropout_scales(0.3, 3, 1, 1 + l, np.arange(7), width)
                  for l, width in enumerate((5, 5, 4))]
    assert_gradients_are_differences(layout, params, x, pixels, labels, activation, scales,
                                     dict(regime, norm=norm),
                                     residual=regime.get("residual", False))


def test_batch_norm_trains_alike_on_one_and_two_threads(problem):
    """--norm batch: a unit's statistics are the whole batch's, so one and two shards give
    the same parameters, bit for bit (with LayerNorm the shards' gradient sums round
    differently)."""
    layout, pixels, labels, order = problem
    trained = {}
    for norm in NORMS_ON:
        layout = Layout(NORM_SIZES, norm)
        start = init_params(layout, "He", np.random.default_rng(1), np.float64)
        for shards in (1, 2):
            params = start.copy()
            kernel_epoch(params, layout, pixels, labels, order, 32, "ReLU", "cross_entropy",
                         "adam", shards=shards, regime=dict(norm=norm, dropout=0.2, seed=4))
            trained[norm, shards] = params
    assert np.array_equal(trained["batch", 1], trained["batch", 2])
    assert not np.array_equal(trained["layer", 1], trained["layer", 2])


def test_kernel_and_twin_draw_the_same_random_numbers():
    from fastmlp.kernels.random import uniform

    rows, units = np.arange(40)[:, None], np.arange(70)[None, :]
    twin = ref.uniform_array(123, 7, 2, rows, units)
    mine = np.array([[uniform(123, 7, 2, r, u) for u in range(70)] for r in range(40)])
    assert np.array_equal(mine, twin)
    assert 0.45 < twin.mean() < 0.55 and twin.min() >= 0 and twin.max() < 1


@pytest.mark.parametrize("activation,regime", [
    ("sigmoid", dict(dropout=0.4, seed=3)), ("sigmoid", dict(label_smoothing=0.2)),
    ("sigmoid", dict(input_dropout=0.3, dropout=0.2, seed=4)),
    *[(activation, dict(dropout=0.4, seed=3, leaky_slope=SLOPE))
      for activation in NEW_ACTIVATIONS]],
    ids=["dropout", "smoothing", "both-dropouts", *[f"dropout-{a}" for a in NEW_ACTIVATIONS]])
def test_regularised_gradients_match_finite_differences(activation, regime):
    """With the step's masks held fixed, kernel and reference gradients are the derivative
    of the (dropped-out, smoothed) batch loss."""
    rng = np.random.default_rng(12)
    layout = Layout((6, 5, 4, 10))
    params = init_params(layout, "Xavier", rng, np.float64) + rng.normal(
        scale=0.1, size=layout.num_params)
    pixels, labels = rng.integers(0, 256, size=(7, 6), dtype=np.uint8), rng.integers(0, 10, 7)
    x = scale_pixels(pixels, np.float64)
    seed, step, places = regime.get("seed", 0), 1, np.arange(7)
    if regime.get("input_dropout"):
        x = x * ref.dropout_scales(regime["input_dropout"], seed, step, 0, places, 6)
    scales = None
    if regime.get("dropout"):
        scales = [ref.dropout_scales(regime["dropout"], seed, step, 1 + l, places, width)
                  for l, width in enumerate((5, 4))]
    assert_gradients_are_differences(layout, params, x, pixels, labels, activation, scales,
                                     regime, smoothing=regime.get("label_smoothing", 0.0),
                                     leaky_slope=regime.get("leaky_slope", LEAKY_SLOPE))


def test_schedules_have_their_shapes():
    def rates(name, warmup=0.0):
        return [scheduled_lr(1.0, SCHEDULES.index(name), float(t), 100.0, warmup)
                for t in range(1, 101)]

    assert rates("constant") == [1.0] * 100
    assert rates("constant", warmup=10)[:10] == pytest.approx([t / 10 for t in range(1, 11)])
    cosine = rates("cosine")
    assert cosine[0] == pytest.approx(1.0, abs=1e-3) and cosine[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(cosine, cosine[1:]))
    step = rates("step")
    assert (step[49], step[50], step[75]) == (1.0, pytest.approx(0.1), pytest.approx(0.01))
    onecycle = rates("onecycle")
    assert onecycle[0] == pytest.approx(1 / 25 + (1 - 1 / 25) / 30)
    assert max(onecycle) == pytest.approx(1.0) and onecycle.index(max(onecycle)) == 29
    assert onecycle[-1] == pytest.approx(1e-4)


def test_epochs_flush_denormals_and_give_the_caller_its_mode_back():
    """Values decaying towards zero (Adam's moments and the weights of always-black pixels
    under weight decay) become denormal and slow every operation on them ~100x: inside the
    kernels they are flushed to zero; outside, the caller's floating-point mode is kept."""
    layout = Layout((30, 16, 10))
    rng = np.random.default_rng(13)
    pixels = np.zeros((64, 30), dtype=np.uint8)  # 27 black pixels: only decay moves their W
    pixels[:, :3] = rng.integers(1, 256, size=(64, 3))
    labels = rng.integers(0, 10, 64)
    params = init_params(layout, "Xavier", rng, np.float32)
    hyper = dict(HYPER, learning_rate=1e-3, weight_decay=5e-4)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold = ref.Optimizer("adam", layers, hyper)  # NumPy in float32: nothing is flushed
    x = scale_pixels(pixels, np.float32)
    state = None
    for _ in range(800):
        ref.train_epoch(layers, gold, x, labels, np.arange(64), 32, "ReLU", "cross_entropy")
        _, _, _, state = kernel_epoch(params, layout, pixels, labels, np.arange(64), 32,
                                      "ReLU", "cross_entropy", "adam", hyper=hyper, state=state)
    tiny = np.finfo(np.float32).tiny

    def denormals(arrays):
        return sum(int(((a != 0) & (np.abs(a) < tiny)).sum()) for a in arrays)

    gold_state = [a for per_layer in gold.state for pair in per_layer for a in pair]
    assert denormals(gold_state) > 0  # the situation is real: unflushed, they appear
    assert denormals((params, state[0], state[1])) == 0
    denormal = np.float32(1e-39) * np.float32(0.5)  # NumPy, after the kernels ran
    assert 0 < denormal < tiny


# ----------------------------------------------------------------------------- distillation

def soft_targets_of(rng, rows, classes, temperature):
    """A teacher's soft targets: softmax(teacher logits / T), rows summing to 1 (one class
    of one row with probability 0, as an underflowed teacher output gives)."""
    logits = rng.normal(size=(rows, classes)) * 4
    soft = ref.softmax(logits / temperature)
    soft[0, 1] = 0.0
    return soft / soft.sum(axis=1, keepdims=True)


DISTILL = dict(teacher="teacher.npz")  # a teacher is named: kernel_inputs' distill_weight


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("temperature,weight,smoothing",
                         [(1.0, 0.5, 0.0), (4.0, 0.9, 0.0), (20.0, 1.0, 0.0), (0.5, 0.0, 0.0),
                          (3.0, 0.7, 0.1)])
def test_distillation_loss_kernel_matches_reference(temperature, weight, smoothing, weighted):
    """loss_backward's cross-entropy, then distill_backward's soft term, against the twin:
    the loss, its gradient and the rows counted right, over temperatures and weights."""
    from fastmlp.kernels.losses import distill_backward

    rng = np.random.default_rng(31)
    logits = rng.normal(size=(11, 10)) * 5
    labels = rng.integers(0, 10, 11)
    soft = soft_targets_of(rng, 11, 10, temperature)
    weights = rng.uniform(0.1, 3.0, 11) if weighted else None
    kernel_weights = NO_WEIGHTS if weights is None else weights
    total = 11.0 if weights is None else weights.sum()
    rows = rng.permutation(11)  # the batch's rows, in another order than the arrays'
    dlogits = np.empty_like(logits)
    hard, correct = loss_backward(dlogits, logits[rows], rows, labels, NO_TARGETS, kernel_weights,
                                  LOSSES.index("cross_entropy"), total, smoothing, 1.0)
    mine = distill_backward(dlogits, logits[rows], rows, soft, kernel_weights, total, hard,
                            weight, temperature)
    gold, gold_grad = ref.distillation_loss_and_grad(
        logits[rows], labels[rows], soft[rows], temperature, weight, smoothing,
        None if weights is None else weights[rows])
    assert mine == pytest.approx(gold, rel=TIGHT)
    assert relative_error(dlogits, gold_grad) < TIGHT
    w = np.ones(11) if weights is None else weights
    assert correct == pytest.approx((w * (logits.argmax(axis=1) == labels)).sum(), rel=TIGHT)


def test_distillation_term_is_zero_where_the_student_matches_the_teacher():
    """KL(q || softmax(z / T)) = 0 and no gradient from it when q is the student's own
    softened output; with weight 1 the labels do not matter at all."""
    from fastmlp.kernels.losses import distill_backward

    rng = np.random.default_rng(32)
    logits = rng.normal(size=(6, 4)) * 3
    soft = ref.softmax(logits / 2.5)
    dlogits = np.full_like(logits, np.nan)
    hard, _ = loss_backward(dlogits, logits, np.arange(6), rng.integers(0, 4, 6), NO_TARGETS,
                            NO_WEIGHTS, LOSSES.index("cross_entropy"), 6.0, 0.0, 1.0)
    loss = distill_backward(dlogits, logits, np.arange(6), soft, NO_WEIGHTS, 6.0, hard, 1.0, 2.5)
    assert abs(loss) < 1e-14 and np.max(np.abs(dlogits)) < 1e-15


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("temperature,weight", [(1.0, 0.5), (4.0, 0.9), (10.0, 1.0)])
def test_distillation_gradients_match_finite_differences(temperature, weight, weighted):
    """The distillation loss of one batch through the network: the kernel's and the twin's
    gradients against centred differences of the twin's loss."""
    rng = np.random.default_rng(33)
    layout = Layout((6, 5, 4, 10))
    params = init_params(layout, "Xavier", rng, np.float64) + rng.normal(
        scale=0.1, size=layout.num_params)
    pixels = rng.integers(0, 256, size=(7, 6), dtype=np.uint8)
    labels = rng.integers(0, 10, 7)
    soft = soft_targets_of(rng, 7, 10, temperature)
    weights = rng.uniform(0.2, 3.0, 7) if weighted else None
    x = scale_pixels(pixels, np.float64)
    distill = (soft, temperature, weight)

    def batch_loss(flat):
        return ref.gradients(layout.views(flat.copy()), x, labels, "tanh", "cross_entropy",
                             weights=weights, distill=distill)[0]

    numeric = centred_differences(batch_loss, params)
    _, gold_grads, _ = ref.gradients(layout.views(params.copy()), x, labels, "tanh",
                                     "cross_entropy", weights=weights, distill=distill)
    regime = dict(DISTILL, temperature=temperature, distill_weight=weight)
    _, _, kernel_grads, _ = kernel_epoch(params.copy(), layout, pixels, labels, np.arange(7), 7,
                                         "tanh", "cross_entropy", "sgd",
                                         hyper=dict(HYPER, weight_decay=0.0), regime=regime,
                                         weights=weights, soft_targets=soft)
    assert relative_error(flatten(gold_grads), numeric) < 1e-6
    assert relative_error(kernel_grads, numeric) < 1e-6


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_distillation_trains_like_reference(problem, weighted, shards):
    """Two epochs learning from soft targets (with label smoothing and dropout, uneven
    shards, a short last batch): losses, accuracies, parameters as the twin's."""
    layout, pixels, labels, order = problem
    rng = np.random.default_rng(34)
    soft = soft_targets_of(rng, len(pixels), 10, 3.0)
    weights = rng.uniform(0.2, 3.0, len(pixels)) if weighted else None
    regime = dict(DISTILL, temperature=3.0, distill_weight=0.8, label_smoothing=0.1,
                  dropout=0.2, seed=5)
    x = scale_pixels(pixels, np.float64)
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    layers = [(w.copy(), b.copy()) for w, b in layout.views(params)]
    gold_optimizer = ref.Optimizer("adam", layers, HYPER)
    state = None
    for epoch_order in (order, order[::-1].copy()):
        gold_loss, gold_acc = ref.train_epoch(layers, gold_optimizer, x, labels, epoch_order, 32,
                                              "ReLU", "cross_entropy", regime, weights, soft)
        mine_loss, mine_acc, _, state = kernel_epoch(params, layout, pixels, labels, epoch_order,
                                                     32, "ReLU", "cross_entropy", "adam",
                                                     state=state, shards=shards, regime=regime,
                                                     weights=weights, soft_targets=soft)
        assert mine_loss == pytest.approx(gold_loss, rel=TIGHT)
        assert mine_acc == pytest.approx(gold_acc, rel=TIGHT)
    assert relative_error(params, flatten(layers)) < TIGHT


def test_without_a_teacher_soft_targets_change_no_bit(problem):
    """No --teacher: the kernels' distill_weight is 0 and soft targets handed in anyway are
    never read (the same bits as none); with a teacher the numbers do change."""
    layout, pixels, labels, order = problem
    soft = soft_targets_of(np.random.default_rng(35), len(pixels), 10, 4.0)
    start = init_params(layout, "Xavier", np.random.default_rng(1), np.float32)
    results = []
    for regime, given in ((None, None), (None, soft), (DISTILL, soft)):
        params = start.copy()
        loss, _, _, _ = kernel_epoch(params, layout, pixels, labels, order, 32, "ReLU",
                                     "cross_entropy", "adam", shards=2, regime=regime,
                                     soft_targets=given)
        results.append((loss, params.tobytes()))
    assert results[0] == results[1]
    assert results[2][0] != results[0][0] and results[2][1] != results[0][1]


def test_distillation_without_soft_targets_raises_before_training(problem):
    layout, pixels, labels, order = problem
    params = init_params(layout, "Xavier", np.random.default_rng(1), np.float64)
    for loss, soft in (("cross_entropy", None), ("cross_entropy", np.ones((200, 3)) / 3)):
        with pytest.raises(ValueError, match="distillation"):
            kernel_epoch(params.copy(), layout, pixels, labels, order, 32, "ReLU", loss, "adam",
                         regime=DISTILL, soft_targets=soft)


def test_soft_targets_from_float32_probabilities_are_those_of_the_logits():
    """Model.soft_targets softens the inference pass's probabilities, softmax(log p / T):
    from float32 probabilities within 1e-6 of softmax(logits / T) in float64, even for
    confident rows (a logit gap of 60)."""
    from fastmlp.inference import soften

    rng = np.random.default_rng(36)
    logits = rng.normal(size=(500, 10)) * 6
    logits[:50, 0] += 60.0
    probabilities = ref.softmax(logits).astype(np.float32)
    for temperature in (1.0, 4.0, 20.0):
        soft = soften(probabilities, temperature)
        assert soft.dtype == np.float64
        assert np.max(np.abs(soft - ref.softmax(logits / temperature))) < 1e-6
        assert np.allclose(soft.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cells", ["numbers", "missing", "infinite"])
def test_column_kernels_match_their_twins(dtype, cells):
    """The preprocessing's column passes (kernels/columns.py) against reference.py: the
    moments of the chosen filled cells, whether a chosen cell is missing and whether any
    cell is infinite; the standardised values written to scattered rows with their missing
    indicator, and the first infinite value."""
    rng = np.random.default_rng(3)
    n = 3001  # not a multiple of any vector width
    values = rng.normal(40.0, 3.0, n).astype(dtype)
    if cells != "numbers":
        values[rng.random(n) < 0.05] = np.nan
    if cells == "infinite":
        values[[1717, 2900]] = [-np.inf, np.inf]
    chosen = rng.random(n) < 0.7
    got, want = column_moments(values, chosen), ref.column_moments(values, chosen)
    assert got[0] == want[0] and got[3:] == want[3:]
    assert got[3] == (cells != "numbers") and got[4] == (cells == "infinite")
    if cells != "infinite":
        np.testing.assert_allclose(got[1:3], want[1:3], rtol=1e-12)
    rows = rng.permutation(n + 50)[:n]  # each value to its own row of a taller matrix
    settings = [dtype(values[chosen & ~np.isnan(values)][:100].mean()), dtype(2.5),
                dtype(40.0)]
    out, twin = np.zeros((n + 50, 4), dtype), np.zeros((n + 50, 4), dtype)
    first = standardise_column(out, rows, 1, values, *settings, 3)
    assert first == ref.standardise_column(twin, rows, 1, values, *settings, 3)
    assert first == (1717 if cells == "infinite" else -1)
    np.testing.assert_array_equal(out, twin)
    assert out[rows, 3].sum() == np.isnan(values).sum()
