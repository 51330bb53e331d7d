"""pytest-benchmark suite: every Numba kernel beside its NumPy twin, and whole epochs.

    python -m pytest bench/ --benchmark-only --benchmark-group-by=group \
        --benchmark-json=bench-results/bench.json

Each group holds the `numba` and `reference` (and, for epochs, the anchors') timings of one
case, so ratios are taken within one run; the regression epochs' reference runs on a slice
(its extra_info's reference_scale). The cases come from fastmlp/benchmarks.py, the same list
`fastmlp bench` times. No assertions on time: parity is checked in tests/.
"""
import pytest

from fastmlp.benchmarks import (ANCHOR_TASKS, ANCHORS, EPOCH_CONFIGS, INSTALL_HINTS,
                                REAL_RUNS, REGRESSION_BATCH_SIZES, epoch_case,
                                gemm_flops_per_second, kernel_cases, real_run, regression_case,
                                regression_table)

KERNEL_CASES = kernel_cases()


@pytest.fixture(scope="module")
def splits():
    from fastmlp.config import TrainConfig
    from fastmlp.data import load_splits

    return load_splits(TrainConfig().validated())


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=[f"{c.group}-{c.label}" for c in KERNEL_CASES])
def test_kernel(benchmark, case, impl):
    benchmark.group = f"{case.group}: {case.label}"
    run = getattr(case, impl)
    run()  # compile and warm caches outside the timing
    benchmark(run)


@pytest.mark.parametrize("impl", ["numba", "reference", *ANCHORS])
@pytest.mark.parametrize("overrides,rows", EPOCH_CONFIGS,
                         ids=[f"{o or 'seed'}-{r or 'all'}" for o, r in EPOCH_CONFIGS])
def test_epoch(benchmark, splits, overrides, rows, impl):
    case = epoch_case(splits, rows, **overrides)
    run = getattr(case, impl, None) or case.anchors.get(impl)
    if run is None:
        pytest.skip(f"{impl} is not installed ({INSTALL_HINTS[impl]})")
    benchmark.group = f"epoch: {case.label}"
    benchmark.extra_info["flop"] = case.work
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)


REGRESSION_ANCHORS = [name for name in ANCHORS if "regression" in ANCHOR_TASKS[name]]


@pytest.fixture(scope="module")
def table():
    return regression_table()


@pytest.mark.parametrize("impl", ["numba", "reference", *REGRESSION_ANCHORS])
@pytest.mark.parametrize("batch_size", REGRESSION_BATCH_SIZES)
def test_regression_epoch(benchmark, table, batch_size, impl):
    """The generated 100,000-row regression table; the reference runs on a slice of each epoch
    (extra_info's reference_scale turns its time into the whole epoch's)."""
    case = regression_case(*table, batch_size)
    run = getattr(case, impl, None) or case.anchors.get(impl)
    if run is None:
        pytest.skip(f"{impl} is not installed ({INSTALL_HINTS[impl]})")
    benchmark.group = f"regression epoch: {case.label}"
    benchmark.extra_info["flop"] = case.work
    if impl == "reference":
        benchmark.extra_info["reference_scale"] = case.reference_scale
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("overrides", REAL_RUNS, ids=[str(o) for o in REAL_RUNS])
def test_real_run(benchmark, overrides):
    """A real multi-epoch `fastmlp train` (evaluation between epochs): the per-epoch figures go
    into extra_info, the slowest of epochs 2..N against the fastest among them."""
    rate = gemm_flops_per_second()
    run = benchmark.pedantic(real_run, args=(None, 54_000, rate), kwargs=overrides, rounds=1,
                             iterations=1)
    benchmark.group = f"real run: {run['case']}"
    benchmark.extra_info.update(run)
