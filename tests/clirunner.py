"""Helpers the test files share: run `fastmlp <args>` in this process (or the sweep command
in a process of its own), read what a run wrote, write IDX files and small slices of a data
set, write sweep files and open a sweep's study.

A plain module, not a conftest: test files import it as `from clirunner import ...` (pytest's
default rootdir-based "prepend" import mode puts tests/ on sys.path).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cli
from fastmlp import data

REPO = Path(__file__).resolve().parents[1]

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


# ----------------------------------------------------------------------------- training runs

def train_ok(output_dir: Path, *args) -> Path:
    """`fastmlp train ARGS --output-dir OUTPUT_DIR`, insisting on success; returns the run
    directory it created."""
    before = set(output_dir.iterdir()) if output_dir.is_dir() else set()
    outcome = invoke("train", *args, "--output-dir", output_dir)
    assert outcome.code == 0, outcome.err
    created = [p for p in set(output_dir.iterdir()) - before if p.name != "wandb"]
    assert len(created) == 1, created
    return created[0]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metrics_of(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_seconds(records: list) -> list:
    """Epoch records without their timings, to compare two runs."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in records]


# ----------------------------------------------------------------------------- sweeps

def sweep_yaml(method: str, epochs: int, batch_size: int, *, name: str | None = None,
               metric: str | None = None, early_terminate: str | None = None,
               **searched: str) -> str:
    """A sweep file of networks with one hidden layer trained for `epochs` epochs in batches
    of `batch_size`: its method, optional name, metric (maximized) and early_terminate, and
    the other parameters, each given as its YAML entry (hidden_size="{values: [4, 8]}")."""
    lines = [f"name: {name}"] if name else []
    lines.append(f"method: {method}")
    if metric:
        lines.append(f"metric: {{name: {metric}, goal: maximize}}")
    if early_terminate:
        lines.append(f"early_terminate: {early_terminate}")
    parameters = {"epochs": f"{{value: {epochs}}}", "num_layers": "{value: 1}",
                  "batch_size": f"{{value: {batch_size}}}", **searched}
    lines += ["parameters:"] + [f"  {key}: {entry}" for key, entry in parameters.items()]
    return "\n".join(lines) + "\n"


def spec_of(text: str, name: str = "test"):
    """The SweepSpec of a sweep file's text."""
    import yaml

    from fastmlp.sweep.spec import parse_spec

    return parse_spec(yaml.safe_load(text), source="test.yaml", default_name=name)


def sweep_program() -> list:
    """`python cli.py sweep` (what users run; the command is defined in cli.py)."""
    return [sys.executable, str(REPO / "cli.py"), "sweep"]


def open_study(out_dir: Path, name: str):
    """The sweep's study in out_dir, opened as fastmlp does: under the storage lock, since a
    sweep starting at the same moment may be creating the tables."""
    import optuna

    from fastmlp.sweep.storage import StorageLock, load_study, storage_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(None, out_dir)
    with StorageLock(url):
        return load_study(url, name)


def worker_job(tmp_path: Path, spec, count: int, seeds: int = 1, shared: dict | None = None,
               parent_pid: int | None = None) -> dict:
    """A sweep worker's job (what `fastmlp sweep` writes for each worker) for a new study of
    `spec` in tmp_path; `shared` as run_sweep takes it. parent_pid: the process the worker
    must outlive, by default this one's parent (a worker run in this process); a worker
    started as a subprocess of this process gives os.getpid()."""
    from fastmlp.sweep import base_config
    from fastmlp.sweep.storage import create_or_load_study, storage_url

    url = storage_url(None, tmp_path)
    create_or_load_study(url, spec, seeds=seeds)
    return {"engine": "optuna", "storage": url, "count": count, "spec": spec.raw,
            "spec_source": spec.source, "name": spec.name, "worker": 1, "seeds": seeds,
            "base_config": dataclasses.asdict(base_config(spec, shared, wandb_mode="disabled",
                                                          threads=1)),
            "trials_dir": str(tmp_path / "trials"), "error_file": str(tmp_path / "error"),
            "parent_pid": os.getppid() if parent_pid is None else parent_pid}
