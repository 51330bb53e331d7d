"""Helpers the CLI test files share: run `fastmlp <args>` in this process, and write small
slices of a data set as raw IDX files.

A plain module, not a conftest: test files import it as `from clirunner import ...` (pytest's
default rootdir-based "prepend" import mode puts tests/ on sys.path).
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cli
from fastmlp import data


# .ci/run sets FASTMLP_STRICT_TESTS=1 itself: there, a test that cannot run (missing data, no
# tmpfs, no PostgreSQL) fails instead of skipping, so a skip never counts as a pass.
STRICT = os.environ.get("FASTMLP_STRICT_TESTS") == "1"


def skip_or_fail(message: str):
    """Skip on a developer's machine that lacks something; fail under .ci/run."""
    if STRICT:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Outcome:
    """What one `fastmlp` invocation did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list:
        return self.err.splitlines()


def invoke(*args) -> Outcome:
    """Run `fastmlp <args>` in this process; returns its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(arg) for arg in args])
    code = exit_info.value.code
    return Outcome(0 if code is None else code, out.getvalue(), err.getvalue())


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The array as an uncompressed IDX file (unsigned bytes); the magic number defaults to
    0x803 for images (3 dimensions) and 0x801 for labels."""
    magic = magic if magic is not None else (0x803 if array.ndim == 3 else 0x801)
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_files(source_dir: Path, directory: Path, n_train: int, n_test: int) -> Path:
    """The first n_train training and n_test test images (and labels) of the data set in
    source_dir, written to directory as raw (not gzipped) IDX files; returns directory."""
    for key, name in data.FILES.items():
        array = data.read_idx(source_dir / name)[:n_train if key.endswith("train") else n_test]
        (directory / name.removesuffix(".gz")).write_bytes(idx_bytes(array))
    return directory


# training and test images in the `small_fashion` data set (tests/conftest.py)
SMALL_FASHION = (2000, 500)
