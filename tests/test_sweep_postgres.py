"""Across machines: two separate `fastmlp sweep` processes share one study on a real
PostgreSQL server (127.0.0.1, URL in FASTMLP_TEST_POSTGRES_URL; .ci/run starts it).

Each process stands for a machine: its own output directory, its own worker. The study must
hold exactly --count trials, each run once, in one of the two directories.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from clirunner import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
URL_VARIABLE = "FASTMLP_TEST_POSTGRES_URL"

SPEC = """
method: random
parameters:
  epochs: {value: 1}
  num_layers: {value: 1}
  batch_size: {value: 128}
  hidden_size: {values: [4, 8, 12, 16, 20, 24]}
  learning_rate: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-2}
"""


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    if not url:
        message = f"{URL_VARIABLE} is not set (.ci/run starts PostgreSQL and sets it)"
        skip_or_fail(message)  # under .ci/run this test must run, never skip
    return url


def sweep_program() -> list:
    return [sys.executable, str(REPO / "cli.py"), "sweep"]


def test_two_sweep_processes_share_one_postgres_study(tmp_path, postgres_url, fastmlp_env,
                                                      fashion_dir, monkeypatch):
    import optuna
    from fastmlp.sweep.storage import with_postgres_driver

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    spec_file = tmp_path / "shared.yaml"
    spec_file.write_text(SPEC)
    name = f"pg-{uuid.uuid4().hex[:10]}"  # a fresh study in a database that may hold others
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    processes = [
        subprocess.Popen(
            [*sweep_program(), str(spec_file), "--count", "4", "--workers", "1",
             "--storage", postgres_url, "--name", name, "--output-dir", str(out),
             "--wandb-mode", "offline", "--data-dir", str(fashion_dir)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for out in machines]  # started together: the study's creation races too
    storage = with_postgres_driver(postgres_url)
    try:
        for process in processes:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, f"{out}\n{err}"

        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == [0, 1, 2, 3]
        assert {t.state.name for t in trials} == {"COMPLETE"}
        # every trial ran once, in one "machine"'s directory, with its own parameters
        run_dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
        assert len(set(run_dirs)) == 4
        for trial, run_dir in zip(trials, run_dirs):
            assert sum(run_dir.is_relative_to(m) for m in machines) == 1
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["config"]["hidden_size"] == trial.params["hidden_size"]
            assert summary["config"]["learning_rate"] == pytest.approx(
                trial.params["learning_rate"])
        on_disk = [p.parent for m in machines for p in m.glob("trials/*/*/summary.json")]
        assert sorted(on_disk) == sorted(run_dirs)  # no trial trained twice
        # both processes took part
        assert len({t.user_attrs["pid"] for t in trials}) == 2
    finally:
        stop_and_delete(processes, name, storage)


def stop_and_delete(processes, name: str, storage: str) -> None:
    """Kill the sweeps still running and delete the study from the shared database."""
    import optuna

    for process in processes:
        if process.poll() is None:
            process.kill()
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass


FINITE_SPEC = """
method: bayes
parameters:
  epochs: {value: 1}
  num_layers: {value: 1}
  batch_size: {value: 256}
  hidden_size: {values: [4, 8, 12]}
"""


def test_two_machines_never_train_the_same_configuration(tmp_path, postgres_url, fastmlp_env,
                                                         fashion_dir, monkeypatch):
    """Two `fastmlp sweep` processes on one PostgreSQL study of a 3-point space, asked for 6
    trials: the claims (config_key under the storage lock) let each point train once, in
    one of the two machines, and the sweep ends when the space is used up."""
    import optuna
    from fastmlp.sweep.storage import with_postgres_driver

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    spec_file = tmp_path / "finite.yaml"
    spec_file.write_text(FINITE_SPEC)
    name = f"pg-finite-{uuid.uuid4().hex[:10]}"
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    processes = [
        subprocess.Popen(
            [*sweep_program(), str(spec_file), "--count", "6", "--workers", "1",
             "--storage", postgres_url, "--name", name, "--output-dir", str(out),
             "--wandb-mode", "disabled", "--data-dir", str(fashion_dir)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for out in machines]
    storage = with_postgres_driver(postgres_url)
    try:
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, f"{out}\n{err}"
            outputs.append(out)
        study = optuna.load_study(study_name=name, storage=storage)
        trained = [t for t in study.get_trials(deepcopy=False)
                   if "repeat_of" not in t.user_attrs]
        assert sorted(t.params["hidden_size"] for t in trained) == [4, 8, 12]
        assert {t.state.name for t in trained} == {"COMPLETE"}
        on_disk = [p for m in machines for p in m.glob("trials/*/*/summary.json")]
        assert len(on_disk) == 3
        assert any("every one of the 3 configurations of the search space has been tried"
                   in out or "has tried every one of the 3 configurations" in out
                   for out in outputs), outputs
    finally:
        stop_and_delete(processes, name, storage)
