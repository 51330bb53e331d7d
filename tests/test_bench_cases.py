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


def test_regression_table_is_seeded_and_standardized():
    x, y = benchmarks.regression_table(rows=500)
    assert x.shape == (500, benchmarks.REGRESSION_FEATURES) and y.shape == (500,)
    assert x.dtype == y.dtype == np.float32
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-5
    again, _ = benchmarks.regression_table(rows=800)
    np.testing.assert_array_equal(x, again[:500])  # a row is the same in any length of table


def test_regression_case_trains_like_its_reference_beside_sklearn():
    x, y = benchmarks.regression_table(rows=300)
    case = benchmarks.regression_case(x, y, 32, reference_rows=None, dtype="float64")
    assert case.group == "regression" and case.reference_scale == 1
    assert case.work == benchmarks.flops_per_sample((50, 256, 256, 1)) * 300
    for _ in range(2):  # the second epoch starts from each one's own updated weights
        loss, _, batches = case.numba()
        gold_loss, _ = case.reference()
        assert batches == 10
        np.testing.assert_allclose(loss, gold_loss, rtol=1e-10)
    assert set(case.anchors) == {"sklearn"}  # jax and torch have no regression epoch
    case.anchors["sklearn"]()


def test_regression_cases_scale_the_reference_and_match_sklearn_settings():
    cases = benchmarks.regression_cases(rows=400, reference_rows=100)
    assert [case.label.split()[0] for case in cases] == ["b32", "b200"]
    assert [case.reference_scale for case in cases] == [4, 4]
    assert all("reference on 100 rows, its time x4" in case.label for case in cases)
    config = benchmarks.TrainConfig(**benchmarks.REGRESSION_CONFIG, batch_size=200).validated()
    model = benchmarks.sklearn_mlp(config)
    assert type(model).__name__ == "MLPRegressor"
    assert model.get_params() | dict(hidden_layer_sizes=(256, 256), activation="relu",
                                     solver="adam", batch_size=200, learning_rate_init=1e-3,
                                     loss="squared_error") == model.get_params()
    np.testing.assert_allclose(model.alpha, config.weight_decay * 200)


def test_a_real_run_is_a_fastmlp_train_process_of_its_own(small_fashion, fastmlp_env):
    """The bench's real runs are what a user runs: `fastmlp train` in a process of its own,
    on the bench's threads, read back from its summary.json."""
    run = benchmarks.real_run(str(small_fashion), 1_800, 1e11, 1, batch_size=256)
    assert run["case"] == f"b256 784-64-64-64-10 {benchmarks.REAL_RUN_EPOCHS} epochs"
    assert len(run["epoch_seconds"]) == benchmarks.REAL_RUN_EPOCHS
    assert all(seconds > 0 for seconds in run["epoch_seconds"])
    assert run["times_flop_bound"] == min(run["epoch_seconds"]) / run["flop_bound_seconds"]
