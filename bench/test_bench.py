"""pytest-benchmark suite: every Numba kernel beside its NumPy twin, and whole epochs.

    python -m pytest bench/ --benchmark-only --benchmark-group-by=group \
        --benchmark-json=bench-results/bench.json

Each group holds the `numba` and `reference` (and, for epochs, `torch`) timings of one case,
so ratios are taken within one run. The cases come from fastmlp/benchmarks.py, the same list
`fastmlp bench` times. No assertions on time: parity is checked in tests/.
"""
import pytest

from fastmlp.benchmarks import EPOCH_CONFIGS, epoch_case, kernel_cases

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


@pytest.mark.parametrize("impl", ["numba", "reference", "torch"])
@pytest.mark.parametrize("overrides,rows", EPOCH_CONFIGS,
                         ids=[f"{o or 'seed'}-{r or 'all'}" for o, r in EPOCH_CONFIGS])
def test_epoch(benchmark, splits, overrides, rows, impl):
    case = epoch_case(splits, rows, **overrides)
    run = getattr(case, impl)
    if run is None:
        pytest.skip("PyTorch is not installed (pip install -e '.[torch]')")
    benchmark.group = f"epoch: {case.label}"
    benchmark.extra_info["flop"] = case.work
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
