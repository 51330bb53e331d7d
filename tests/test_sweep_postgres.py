"""Across machines: two separate `fastmlp sweep` processes share one study on a real
PostgreSQL server (127.0.0.1, URL in FASTMLP_TEST_POSTGRES_URL; .ci/run starts it).

Each process stands for a machine: its own output directory, its own worker. The study must
hold exactly --count trials, each run once, in one of the two directories.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from clirunner import REPO, skip_or_fail, sweep_program, sweep_yaml

URL_VARIABLE = "FASTMLP_TEST_POSTGRES_URL"

SPEC = sweep_yaml("random", 1, 128, hidden_size="{values: [4, 8, 12, 16, 20, 24]}",
                  learning_rate="{distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-2}")


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    if not url:
        message = f"{URL_VARIABLE} is not set (.ci/run starts PostgreSQL and sets it)"
        skip_or_fail(message)  # under .ci/run this test must run, never skip
    return url


@pytest.fixture
def two_machines(tmp_path, postgres_url, fastmlp_env, fashion_dir, monkeypatch):
    """sweeps(spec_text, prefix, count, wandb_mode): two `fastmlp sweep` processes of
    spec_text, each with --workers 1 and an output directory of its own (a "machine"),
    started together on a fresh study (its name starts with prefix) of the shared database:
    the study's creation races too. In a `with`, it gives (study, machines, their stdouts)
    once both succeeded; after it, kills what still runs and deletes the study from the
    database, which may hold others."""
    import optuna
    from fastmlp.sweep.storage import with_postgres_driver

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    storage = with_postgres_driver(postgres_url)

    @contextlib.contextmanager
    def sweeps(spec_text: str, prefix: str, count: int, wandb_mode: str):
        spec_file = tmp_path / f"{prefix}.yaml"
        spec_file.write_text(spec_text)
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
        processes = [
            subprocess.Popen(
                [*sweep_program(), str(spec_file), "--count", str(count), "--workers", "1",
                 "--storage", postgres_url, "--name", name, "--output-dir", str(out),
                 "--wandb-mode", wandb_mode, "--data-dir", str(fashion_dir)],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for out in machines]
        try:
            outputs = []
            for process in processes:
                out, err = process.communicate(timeout=180)
                assert process.returncode == 0, f"{out}\n{err}"
                outputs.append(out)
            yield optuna.load_study(study_name=name, storage=storage), machines, outputs
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
            try:
                optuna.delete_study(study_name=name, storage=storage)
            except KeyError:
                pass

    return sweeps


def test_two_sweep_processes_share_one_postgres_study(two_machines):
    with two_machines(SPEC, "pg", count=4, wandb_mode="offline") as (study, machines, _):
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


FINITE_SPEC = sweep_yaml("bayes", 1, 256, hidden_size="{values: [4, 8, 12]}")


def test_two_machines_never_train_the_same_configuration(two_machines):
    """Two `fastmlp sweep` processes on one PostgreSQL study of a 3-point space, asked for 6
    trials: the claims (config_key under the storage lock) let each point train once, in
    one of the two machines, and the sweep ends when the space is used up."""
    with two_machines(FINITE_SPEC, "pg-finite", count=6,
                      wandb_mode="disabled") as (study, machines, outputs):
        trained = [t for t in study.get_trials(deepcopy=False)
                   if "repeat_of" not in t.user_attrs]
        assert sorted(t.params["hidden_size"] for t in trained) == [4, 8, 12]
        assert {t.state.name for t in trained} == {"COMPLETE"}
        on_disk = [p for m in machines for p in m.glob("trials/*/*/summary.json")]
        assert len(on_disk) == 3
        assert any("every one of the 3 configurations of the search space has been tried"
                   in out or "has tried every one of the 3 configurations" in out
                   for out in outputs), outputs
