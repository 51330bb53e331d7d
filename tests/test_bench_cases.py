"""The cases `fastmlp bench` and bench/ time: every kernel case and its NumPy twin run on the
same inputs (the suite in bench/ only times them, so a broken case would go unseen)."""
import numpy as np

from fastmlp import benchmarks


def test_every_kernel_case_runs_beside_its_reference():
    cases = (benchmarks.dense_cases(sizes={"tiny": (4, 6, 5)})
             + benchmarks.activation_cases(sizes={"tiny": (4, 6)})
             + benchmarks.loss_cases()
             + benchmarks.optimizer_cases(sizes={"tiny": 1_000}))
    groups = {case.group for case in cases}
    assert groups == {"dense_forward", "dense_backward", "activation", "loss", "optimizer"}
    for case in cases:
        case.numba()
        case.reference()
    optimizers = [case.label.split()[0] for case in cases if case.group == "optimizer"]
    assert optimizers == list(benchmarks.OPTIMIZERS)


def test_epoch_case_trains_like_its_reference():
    from fastmlp.data import Splits

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(256, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, 256)
    splits = Splits(pixels, labels, None, None, None, None, tuple(map(str, range(10))))
    case = benchmarks.epoch_case(splits, dtype="float64")
    case.numba()
    case.reference()
    assert case.work == benchmarks.flops_per_sample((784, 64, 64, 64, 10)) * 256
