"""Shared test fixtures: where the machine's real data lives, and an environment in which
fastmlp reads only that data and writes only under pytest's temporary directories."""
from __future__ import annotations

from pathlib import Path

import pytest

from clirunner import SMALL_FASHION, skip_or_fail, write_idx_files

REPO = Path(__file__).resolve().parents[1]
# Fashion-MNIST: the Debian package `dataset-fashion-mnist`; MNIST: the repository's copy
# (which fastmlp, run from this clone, also finds on its own: data.CLONE_MNIST_DIR).
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = REPO / "data" / "mnist"


def require_data(directory: Path, how: str) -> Path:
    """The directory, or a skip when it is missing on a developer's machine; under .ci/run
    a missing data set is a failure: a skipped test must never count as passing."""
    if not directory.is_dir():
        skip_or_fail(f"{directory} missing ({how})")
    return directory


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The real Fashion-MNIST files."""
    return require_data(FASHION_DIR, "apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files."""
    return require_data(MNIST_DIR, "the repository's data/mnist/")


@pytest.fixture(scope="session")
def small_fashion(fashion_dir, tmp_path_factory) -> Path:
    """The first 2,000 training and 500 test images of Fashion-MNIST, as raw IDX files."""
    return write_idx_files(fashion_dir, tmp_path_factory.mktemp("small-fashion"), *SMALL_FASHION)


@pytest.fixture(scope="module")
def fastmlp_env(tmp_path_factory):
    """For a whole test module: no user dataset cache, no outside data dir or mirror (so no
    download), the machine's data copies, wandb state in a temp dir, no wandb credentials.
    WANDB_DIR is unset, so a run's wandb files go under its --output-dir."""
    home = tmp_path_factory.mktemp("fastmlp-env")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTMLP_CACHE_DIR", str(home / "cache"))
        for var in ("FASTMLP_DATA_DIR", "FASTMLP_MIRROR", "WANDB_DIR", "WANDB_API_KEY",
                    "WANDB_MODE"):
            patch.delenv(var, raising=False)
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            patch.setenv(var, str(home / var.lower()))
        patch.setenv("NETRC", str(home / "netrc"))  # no file: no wandb credentials
        yield home
