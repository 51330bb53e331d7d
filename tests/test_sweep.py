"""Tests of `fastmlp sweep`: the sweep file, its mapping to Optuna and W&B, and real sweeps.

Real sweeps run the real `train` on the machine's Fashion-MNIST through `python cli.py
sweep` (worker processes, SQLite study, wandb offline), with tiny models (a few hidden units,
1 epoch; SLOW trains 12 for the fault tests) and 2-6 trials. The fault tests use real
processes and real signals: SIGKILL of a worker, SIGINT of the sweep, SIGKILL of everything.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clirunner import REPO, open_study, spec_of, sweep_program, sweep_yaml, worker_job
from fastmlp.config import TrainConfig
from fastmlp.errors import ConfigError, FastMLPError
from fastmlp.sweep import base_config, resolve_count, run_sweep, threads_per_worker
from fastmlp.sweep.spec import load_spec
from fastmlp.sweep.storage import redacted, storage_url, with_postgres_driver
from fastmlp.sweep.wandb_engine import WandbUnavailable, wandb_sweep_config
from fastmlp.sweep.worker import make_objective, make_pruner, make_sampler

SWEEP_TIMEOUT = 150  # seconds; a stuck sweep fails the test instead of hanging the suite

# A sweep that trains in about a second per trial.
TINY_SEARCH = dict(
    hidden_size="{values: [4, 8, 12, 16]}",
    learning_rate="{distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-2}",
    activation="{values: [relu, tanh]}")
TINY = sweep_yaml("random", 1, 128, name="tiny", metric="val_accuracy", **TINY_SEARCH)

# The fault tests' sweep: the same tiny models for SLOW_EPOCHS epochs, a few seconds per
# trial, so a signal sent when a trial is seen mid-training lands in that trial. (At batch
# 128 the smallest model trained its 12 epochs in 0.6 s on a Zen 4: a poll of the study
# could miss the trial's first half.)
SLOW_EPOCHS = 12
SLOW = sweep_yaml("random", SLOW_EPOCHS, 64, name="slow", metric="val_accuracy",
                  **TINY_SEARCH)


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# =============================================================================== units

@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_loads(path):
    spec = load_spec(path)
    assert spec.searched and spec.metric == "val_accuracy"


def test_per_layer_widths_are_a_sweep_choice_and_set_the_layer_count():
    from fastmlp.sweep.worker import config_values

    spec = spec_of("""
parameters:
  hidden_size: {values: [32, [48, 24], "64 32 16"]}
""")
    (param,) = spec.searched
    assert param.values == (32, "48 24", "64 32 16")  # scalars Optuna can offer
    job = {"base_config": TrainConfig().validated().to_dict()}
    for choice, layers, widths in ((32, 3, (32, 32, 32)), ("48 24", 2, (48, 24)),
                                   ("64 32 16", 3, (64, 32, 16))):
        config = TrainConfig(**config_values(spec, job, {"hidden_size": choice}))
        assert (config.num_layers, config.hidden_widths) == (layers, widths)
    with pytest.raises(ConfigError, match="hidden_size"):
        spec_of("parameters:\n  hidden_size: {values: [[64, 0]]}\n")


def test_cs6910_file_is_the_assignment_space():
    spec = load_spec(REPO / "sweeps" / "cs6910.yaml")
    values = {p.name: set(p.values) for p in spec.searched}
    assert values == {
        "epochs": {5, 10}, "num_layers": {3, 4, 5}, "hidden_size": {32, 64, 128},
        "weight_decay": {0.0, 0.0005, 0.5}, "learning_rate": {1e-3, 1e-4},
        "optimizer": {"sgd", "momentum", "nag", "rmsprop", "adam", "nadam"},
        "batch_size": {16, 32, 64}, "weight_init": {"random", "Xavier"},
        "activation": {"sigmoid", "tanh", "ReLU"},
    }
    assert (spec.name, spec.method, spec.metric, spec.goal) == (
        "cs6910", "bayes", "val_accuracy", "maximize")
    assert spec.constants == {"loss": "cross_entropy"}
    assert spec.early_terminate is not None and spec.early_terminate.max_resource == 10


def test_each_distribution_maps_to_its_optuna_distribution():
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    spec = spec_of("""
parameters:
  learning_rate: {distribution: uniform, min: 0.001, max: 0.1}
  hidden_size: {distribution: int_uniform, min: 8, max: 64}
  weight_decay: {distribution: log_uniform_values, min: 1e-6, max: 1e-2}
  epsilon: {distribution: log_uniform, min: -20, max: -10}
  momentum: {distribution: q_uniform, min: 0.5, max: 0.9, q: 0.1}
  batch_size: {distribution: q_uniform, min: 16, max: 128, q: 16}
  activation: {distribution: categorical, values: [relu, TANH, Sigmoid]}
  loss: {distribution: constant, value: mean_squared_error}
""")
    trial = optuna.create_study().ask()
    drawn = {p.name: p.suggest(trial) for p in spec.searched}
    assert trial.distributions == {
        "learning_rate": FloatDistribution(0.001, 0.1),
        "hidden_size": IntDistribution(8, 64),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        "epsilon": FloatDistribution(math.exp(-20), math.exp(-10), log=True),
        "momentum": FloatDistribution(0.5, 0.9, step=0.1),
        "batch_size": IntDistribution(16, 128, step=16),
        # choices in the spec's spelling, whatever the case in the file
        "activation": CategoricalDistribution(["ReLU", "tanh", "sigmoid"]),
    }
    assert isinstance(drawn["hidden_size"], int) and drawn["batch_size"] % 16 == 0
    assert spec.constants == {"loss": "mean_squared_error"}


def test_the_activations_and_leaky_slope_are_sweep_parameters():
    spec = spec_of("""
parameters:
  activation: {values: [gelu, SILU, leakyrelu, relu]}
  leaky_slope: {min: 0.0, max: 0.3}
""")
    params = {p.name: p for p in spec.params}
    assert params["activation"].values == ("GELU", "SiLU", "LeakyReLU", "ReLU")
    assert params["leaky_slope"].distribution == "uniform"
    assert (params["leaky_slope"].low, params["leaky_slope"].high) == (0.0, 0.3)


def test_the_deformations_are_sweep_parameters_checked_like_train():
    spec = spec_of("""
parameters:
  rotate: {min: 0.0, max: 15.0}
  scale: {values: [0, 0.1]}
  shear: {values: [0, 5]}
  elastic: {values: [0, 34]}
  elastic_sigma: {values: [4, 6]}
""")
    params = {p.name: p for p in spec.params}
    assert (params["rotate"].low, params["rotate"].high) == (0.0, 15.0)
    assert params["elastic"].values == (0.0, 34.0) and params["scale"].values == (0.0, 0.1)
    with pytest.raises(ConfigError, match="rotate.*--rotate: 200.0 must be"):
        spec_of("parameters:\n  rotate: {min: 0, max: 200}\n")
    record = {p.name for p in load_spec(REPO / "sweeps" / "record.yaml").params}
    assert {"rotate", "scale", "shear", "elastic", "elastic_sigma"} <= record
    assert {"norm", "residual", "activation", "leaky_slope"} <= record  # issue N's layers
    norm = spec_of("parameters:\n  norm: {values: [none, layer]}\n").params[0]
    assert norm.values == ("none", "layer")
    with pytest.raises(ConfigError, match="norm"):
        spec_of("parameters:\n  norm: {values: [none, group]}\n")


def test_distribution_is_inferred_like_wandb_and_numbers_are_coerced():
    spec = spec_of("""
parameters:
  hidden_size: {min: 8, max: 32}
  learning_rate: {min: 1e-4, max: 1.0e-2}     # YAML reads 1e-4 as a string
  weight_decay: {values: [0, 5e-4]}
  weight_init: {value: xavier}
""")
    params = {p.name: p for p in spec.params}
    assert params["hidden_size"].distribution == "int_uniform"
    assert params["learning_rate"].distribution == "uniform"
    assert (params["learning_rate"].low, params["learning_rate"].high) == (1e-4, 1e-2)
    assert params["weight_decay"].values == (0.0, 0.0005)
    assert params["weight_init"].values == ("Xavier",)


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "must be a YAML mapping, not a list"),
    ("", "must be a YAML mapping, not empty"),
    ("parameters: {lr: {values: [0.1]}}", "unknown parameter 'lr'"),
    ("parameters: {learning_rate: {distribution: normal, mu: 0, sigma: 1}}", "'mu'"),
    ("parameters: {learning_rate: {distribution: normal, min: 0.1, max: 1}}",
     "distribution 'normal' is not supported"),
    ("parameters: {activation: {values: [tanh, ReLU], probabilities: [0.5, 0.5]}}",
     "'probabilities' is not supported"),
    ("parameters: {learning_rate: {min: 0.1, max: 0.01}}", "min 0.1 is greater than max 0.01"),
    ("parameters: {activation: {values: [swish]}}", "'swish' is not one of"),
    ("parameters: {learning_rate: {values: [-1]}}", "must be a finite number > 0"),
    ("parameters: {leaky_slope: {values: [0.01, 1.5]}}", "must be in [0, 1)"),
    ("parameters: {epochs: {distribution: uniform, min: 1, max: 3}}", "is a whole number"),
    ("method: hyperopt\nparameters: {epochs: {value: 1}}", "method 'hyperopt' is not supported"),
    ("metric: {name: accuracy}\nparameters: {epochs: {value: 1}}", "metric 'accuracy'"),
    ("method: grid\nparameters: {learning_rate: {min: 0.1, max: 0.2}}",
     "grid search needs discrete values"),
    ("early_terminate: {type: median}\nparameters: {epochs: {value: 1}}",
     "type 'median' is not supported"),
    ("controller: {type: local}\nparameters: {epochs: {value: 1}}",
     "'controller' is not supported"),
    ("parameters: [epochs]", "'parameters' must be a non-empty mapping"),
    ("parameters: {epochs: 5}", "expected a mapping"),
    ("name: my sweep\nparameters: {epochs: {value: 1}}", "sweep name 'my sweep'"),
    ("parameters: {epochs: {values: [1, [2]]}", "not valid YAML"),
])
def test_bad_sweep_files_fail_with_one_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as raised:
        load_spec(write(tmp_path, text))
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message


def test_missing_sweep_file_is_one_line(tmp_path):
    with pytest.raises(FastMLPError, match=r"^sweep file .*nope.yaml not found$"):
        load_spec(tmp_path / "nope.yaml")


def test_methods_map_to_samplers_and_hyperband_to_pruner():
    import optuna

    text = "parameters: {epochs: {values: [3, 9]}, hidden_size: {values: [8, 16]}}\n"
    for method, sampler in (("bayes", optuna.samplers.TPESampler),
                            ("random", optuna.samplers.RandomSampler),
                            ("grid", optuna.samplers.GridSampler)):
        assert isinstance(make_sampler(spec_of(f"method: {method}\n" + text)), sampler)
    assert isinstance(make_pruner(spec_of(text)), optuna.pruners.NopPruner)

    pruner = make_pruner(spec_of("early_terminate: {type: hyperband, min_iter: 1, eta: 2}\n" + text))
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (1, 9, 2)
    # wandb's max_iter + s form: brackets down to max_iter / eta^s
    by_max = spec_of("early_terminate: {type: hyperband, max_iter: 27, s: 2, eta: 3}\n" + text)
    assert (by_max.early_terminate.min_resource, by_max.early_terminate.max_resource) == (3, 27)


def test_count_defaults_to_run_cap_or_grid_and_is_required_otherwise():
    grid = spec_of("method: grid\nparameters: {hidden_size: {values: [8, 16]}, "
                   "num_layers: {min: 1, max: 3}}")
    assert grid.grid_size == 6 and resolve_count(None, grid) == 6
    assert resolve_count(50, grid, echo=lambda line: None) == 6  # never more than the grid
    assert resolve_count(None, spec_of("run_cap: 7\nparameters: {epochs: {value: 1}}")) == 7
    with pytest.raises(ConfigError, match="give --count N"):
        resolve_count(None, spec_of("parameters: {epochs: {value: 1}}"))


def test_base_config_of_the_trials():
    spec = spec_of("project: p\nparameters: {epochs: {value: 1}}", name="s1")
    config = base_config(spec, {"dataset": "mnist", "data_dir": "/data"}, wandb_mode="offline",
                         threads=1, group="s1")
    assert (config.dataset, config.data_dir, config.wandb_mode, config.threads, config.group,
            config.wandb_project) == ("mnist", "/data", "offline", 1, "s1", "p")
    with pytest.raises(ConfigError, match="already sets dataset"):
        base_config(spec_of("parameters: {dataset: {value: mnist}}"), {"dataset": "mnist"})
    with pytest.raises(ConfigError, match="--data: .* already sets dataset"):
        base_config(spec_of("parameters: {dataset: {value: mnist}}"), {"data": "my.csv"})


def test_storage_urls():
    assert storage_url(None, Path("/x/out")) == "sqlite:////x/out/study.db"
    url = "postgresql://u:secret@127.0.0.1:5432/db"
    driver_url = with_postgres_driver(url)
    assert driver_url.endswith("://u:secret@127.0.0.1:5432/db")
    assert driver_url.startswith("postgresql")
    assert redacted(url) == "postgresql://u:***@127.0.0.1:5432/db"
    with pytest.raises(FastMLPError, match="is not a database URL"):
        storage_url("study.db", Path("."))


def test_wandb_sweep_config_sent_to_the_server():
    spec = spec_of("""
name: cs
method: bayes
project: proj
metric: {name: val_loss, goal: minimize}
early_terminate: {type: hyperband, min_iter: 2}
parameters:
  epochs: {values: [5, 10]}
  learning_rate: {min: 1e-4, max: 1.0e-2, distribution: log_uniform_values}
  activation: {values: [relu, tanh]}
  loss: {value: cross_entropy}
""", name="cs")
    config = wandb_sweep_config(spec, count=20, shared={"dataset": "mnist", "data_dir": "/d"})
    assert config == {
        "name": "cs", "method": "bayes", "project": "proj",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            "epochs": {"distribution": "categorical", "values": [5, 10]},
            "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "activation": {"distribution": "categorical", "values": ["ReLU", "tanh"]},
            "loss": {"distribution": "constant", "value": "cross_entropy"},
            "dataset": {"distribution": "constant", "value": "mnist"},
        },
        "early_terminate": {"type": "hyperband", "min_iter": 2},
        "run_cap": 20,
        "program": "cli.py",
        "command": ["${env}", "${interpreter}", "-m", "cli", "train", "--wandb-mode", "online",
                    "--data-dir", "/d", "${args}"],
    }
    # what the agent passes as ${args} must be train flags: the parameters' names are
    from cli import cli as cli_group
    train_flags = {opt for p in cli_group.commands["train"].params for opt in p.opts}
    assert all(f"--{name}" in train_flags for name in config["parameters"])
    json.dumps(config)  # plain data only
    # your own data: its flags go to the agents' command; a default value is left out
    own = wandb_sweep_config(spec, count=20, shared={"data": "my.csv", "label_column": "y",
                                                     "test_fraction": 0.2})
    assert own["command"][-5:] == ["--data", "my.csv", "--label-column", "y", "${args}"]
    assert "dataset" not in own["parameters"] and "--test-fraction" not in own["command"]
    table = wandb_sweep_config(spec, count=20, shared={
        "data": "t.parquet", "target": ("a", "b"), "drop": ("id",), "preprocess": False,
        "delimiter": ";"})
    assert table["command"][-11:] == ["--data", "t.parquet", "--target", "a", "b", "--drop", "id",
                                      "--no-preprocess", "--delimiter", ";", "${args}"]


@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize("setup, expected", [
    ({}, "needs a W&B API key"),
    ({"WANDB_MODE": "offline"}, "WANDB_MODE is offline"),
    # a key, but no server: a closed local port stands in for "no network"
    ({"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"},
     "cannot reach the W&B server 127.0.0.1:9"),
])
def test_wandb_engine_fails_at_once_without_server(tmp_path, monkeypatch, no_wandb_credentials,
                                                   setup, expected):
    for var, value in setup.items():
        monkeypatch.setenv(var, value)
    spec_file = write(tmp_path, TINY)
    started = time.monotonic()
    with pytest.raises(WandbUnavailable) as raised:
        run_sweep(spec_file, count=2, engine="wandb", output_dir=tmp_path / "out")
    assert time.monotonic() - started < 10
    assert expected in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_wandb_engine_refuses_offline_trials(tmp_path, no_wandb_credentials):
    with pytest.raises(WandbUnavailable, match="--wandb-mode is offline"):
        run_sweep(write(tmp_path, TINY), count=2, engine="wandb", wandb_mode="offline")


# =============================================================================== real sweeps

@pytest.fixture
def sweep_env(fastmlp_env, fashion_dir, tmp_path, monkeypatch):
    """Environment for sweep processes: isolated caches, wandb files in tmp_path."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    return dict(os.environ)


def sweep_args(spec_file, out_dir, *more, fashion_dir="/usr/share/datasets/fashion-mnist"):
    return [str(spec_file), "--output-dir", str(out_dir), "--wandb-mode", "offline",
            "--data-dir", str(fashion_dir), *more]


def cli_sweep(args, env, **popen) -> subprocess.Popen:
    """Start the sweep command with ARGS in a process of its own."""
    return subprocess.Popen([*sweep_program(), *args], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = SWEEP_TIMEOUT) -> tuple:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"sweep did not finish in {timeout}s\n{out}\n{err}")
    return process.returncode, out, err


def run_cli_sweep(args, env, timeout: float = SWEEP_TIMEOUT) -> tuple:
    return finish(cli_sweep(args, env), timeout)


def states(study) -> dict:
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


def wait_for(condition, timeout: float, what: str, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"sweep ended before {what}: {process.returncode}\n{out}\n{err}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def trial_mid_training(out_dir: Path, name: str = "slow", workers: int = 1):
    """A RUNNING trial of the SLOW sweep that has trained an epoch and has at least half of
    its epochs still to train (a second or more), once trials of `workers` workers have each
    reported an epoch; or None. A signal sent now lands in that trial, not between trials,
    nor in kernel loading before the first epoch; and every one of those workers has loaded
    its kernels, so it is in or between epochs, each a fraction of a second."""
    if not (out_dir / "study.db").exists():
        return None
    try:
        study = open_study(out_dir, name)
    except FastMLPError:  # no study yet
        return None
    trials = study.get_trials(deepcopy=False)
    if len({t.user_attrs.get("worker") for t in trials if t.intermediate_values}) < workers:
        return None
    for trial in trials:
        if trial.state.name == "RUNNING" and \
                1 <= len(trial.intermediate_values) <= SLOW_EPOCHS // 2:
            return trial
    return None


def wait_for_training(out_dir: Path, sweep, workers: int = 1):
    """The first trial seen mid-training once `workers` workers have trained an epoch (the
    Numba cache may have to compile first, and a loaded machine may start a worker late):
    the sweep's storage says when, so no guess of how long that takes."""
    return wait_for(lambda: trial_mid_training(out_dir, workers=workers), SWEEP_TIMEOUT,
                    f"a trial mid-training after {workers} worker(s) trained an epoch", sweep)


def explained(study, out: str = "", err: str = "") -> str:
    """Each trial's state, worker, start and fail reason, and the sweep's output: what a
    failed assertion of a fault test prints."""
    lines = [f"trial {t.number} {t.state.name} worker {t.user_attrs.get('worker')} "
             f"pid {t.user_attrs.get('pid')} started {t.datetime_start:%H:%M:%S.%f} "
             f"epochs {len(t.intermediate_values)} "
             f"fail_reason {t.user_attrs.get('fail_reason')!r}"
             for t in study.get_trials(deepcopy=False)]
    return "\n".join([*lines, "--- stdout", out, "--- stderr", err])


def check_trial_runs(study):
    """Each finished trial trained once, in its own run directory, with its own parameters."""
    run_dirs = set()
    for trial in study.get_trials(deepcopy=False, states=None):
        if trial.state.name != "COMPLETE":
            continue
        run_dir = Path(trial.user_attrs["run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
        for name, value in trial.params.items():
            assert summary["config"][name] == pytest.approx(value), (trial.number, name)
        assert summary["epochs"][-1]["val_accuracy"] == pytest.approx(trial.value)
        assert trial.intermediate_values == {
            i + 1: pytest.approx(e["val_accuracy"]) for i, e in enumerate(summary["epochs"])}
        assert run_dir.parent.name == f"{trial.number:04d}"
        run_dirs.add(run_dir)
    return run_dirs


def test_cli_has_the_sweep_command():
    code = subprocess.run([*sweep_program(), "--help"], capture_output=True, text=True,
                          cwd=REPO)
    assert code.returncode == 0, code.stderr
    for option in ("--count", "--workers", "--storage", "--engine", "--name", "--report",
                   "--output-dir", "--wandb-mode", "--data-dir", "--dataset"):
        assert option in code.stdout


def test_cli_errors_are_one_line(tmp_path, sweep_env):
    code, out, err = run_cli_sweep([str(tmp_path / "missing.yaml")], sweep_env)
    assert code != 0 and err.strip().splitlines() == [
        f"error: sweep file {tmp_path / 'missing.yaml'} not found"]
    bad = write(tmp_path, "parameters: {learning_rate: {min: 1, max: 0.5}}")
    code, out, err = run_cli_sweep([str(bad), "--count", "2"], sweep_env)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "min 1 is greater than max 0.5" in err


def test_sweep_with_two_workers_then_continue_and_report(tmp_path, sweep_env, fashion_dir):
    spec_file, out = write(tmp_path, TINY), tmp_path / "out"
    code, stdout, err = run_cli_sweep(
        sweep_args(spec_file, out, "--count", "3", "--workers", "2", fashion_dir=fashion_dir),
        sweep_env)
    assert code == 0, err
    study = open_study(out, "tiny")
    assert states(study) == {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE"}
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # both workers trained
    assert len(check_trial_runs(study)) == 3
    for trial in study.trials:  # each of the 2 workers trains with its share of the cores
        summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["config"]["threads"] == threads_per_worker(2)
    # wandb offline runs, one per trial, in WANDB_DIR
    assert len(list((tmp_path / "wandb").glob("wandb/offline-run-*"))) == 3

    # the report: table, reproducing command, CSV, plots
    best = max(study.trials, key=lambda t: t.value)
    assert "best trials of sweep tiny" in stdout and f"best: trial {best.number}" in stdout
    command = (out / "best_command.txt").read_text().strip()
    assert command == best.user_attrs["command"] and command in stdout
    assert command.startswith("fastmlp train ") and f"-sz {best.params['hidden_size']}" in command
    assert f"--threads {threads_per_worker(2)}" in command  # the trial's own thread count
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["number"] for row in rows] == ["0", "1", "2"]
    assert {row["state"] for row in rows} == {"COMPLETE"}
    for png in ("param_importances.png", "parallel_coordinate.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "trials/hour" in stdout
    # ... and the command does reproduce the best trial
    import shlex
    from cli import cli as cli_group
    cli_group.main([*shlex.split(command)[1:], "--wandb-mode", "disabled", "--no-progress",
                    "--output-dir", str(tmp_path / "again"), "--data-dir", str(fashion_dir)],
                   standalone_mode=False)
    again, = (tmp_path / "again").glob("*/summary.json")
    assert json.loads(again.read_text())["epochs"][-1]["val_accuracy"] == best.value

    # the same sweep again with a larger count runs only the missing trial (Python API)
    outcome = run_sweep(spec_file, count=4, workers=2, output_dir=out, wandb_mode="offline",
                        shared={"data_dir": str(fashion_dir)}, echo=lambda line: None)
    assert (outcome.trials_before, outcome.trials_after, outcome.workers) == (3, 4, 1)
    study = open_study(out, "tiny")
    assert states(study) == {n: "COMPLETE" for n in range(4)}
    assert len(check_trial_runs(study)) == 4

    # --report only reads the study
    code, stdout, err = run_cli_sweep([str(spec_file), "--output-dir", str(out), "--report"],
                                      sweep_env)
    assert code == 0, err
    assert "sweep tiny: 4 trials (4 complete)" in stdout
    assert len(open_study(out, "tiny").trials) == 4


def test_changed_sweep_file_is_refused_for_an_existing_study(tmp_path):
    from fastmlp.sweep.storage import create_or_load_study

    url = storage_url(None, tmp_path)
    create_or_load_study(url, spec_of(TINY))
    create_or_load_study(url, spec_of(TINY))  # the same file again: fine
    with pytest.raises(FastMLPError, match="made from a different sweep file"):
        create_or_load_study(url, spec_of(TINY.replace("[4, 8, 12, 16]", "[4, 8]")))


def test_grid_sweep_runs_every_point_once(tmp_path, sweep_env, fashion_dir):
    """grid: every point once, count from the grid; with hyperband, a trial may be pruned
    after epoch 1 and then leaves no summary.json."""
    spec_file = write(tmp_path, sweep_yaml(
        "grid", 2, 256, early_terminate="{type: hyperband, min_iter: 1, eta: 3}",
        hidden_size="{values: [4, 16]}", learning_rate="{values: [1.0e-4, 1.0e-2]}"),
        name="grid.yaml")
    out = tmp_path / "out"
    outcome = run_sweep(spec_file, workers=2, output_dir=out, wandb_mode="disabled",
                        shared={"data_dir": str(fashion_dir)}, echo=lambda line: None)
    assert outcome.trials_after == 4
    study = open_study(out, "grid")
    points = sorted((t.params["hidden_size"], t.params["learning_rate"]) for t in study.trials)
    assert points == [(4, 1e-4), (4, 1e-2), (16, 1e-4), (16, 1e-2)]
    assert set(states(study).values()) <= {"COMPLETE", "PRUNED"}
    for trial in study.trials:
        assert 1 in trial.intermediate_values  # val accuracy reported after epoch 1
        if trial.state.name == "PRUNED":
            assert list(trial.intermediate_values) == [1]
            assert not list((out / "trials" / f"{trial.number:04d}").glob("*/summary.json"))
    check_trial_runs(study)


def test_a_point_train_refuses_fails_once_and_the_sweep_goes_on(tmp_path, sweep_env,
                                                                fashion_dir):
    """--residual on one hidden layer has no skip to make: that trial fails with train's
    reason, its point counts as tried (never trained again) and the other points train."""
    spec_file = write(tmp_path, sweep_yaml(
        "grid", 1, 256, num_layers="{values: [1, 2]}", hidden_size="{value: 8}",
        residual="{values: [false, true]}"), name="skips.yaml")
    out = tmp_path / "out"
    outcome = run_sweep(spec_file, workers=1, output_dir=out, wandb_mode="disabled",
                        shared={"data_dir": str(fashion_dir)}, echo=lambda line: None)
    assert outcome.trials_after == 4
    trials = {(t.params["num_layers"], t.params["residual"]): t
              for t in open_study(out, "skips").trials}
    assert len(trials) == 4
    refused = trials.pop((1, True))
    assert refused.state.name == "FAIL"
    assert refused.user_attrs["fail_reason"].startswith("--residual: a skip joins")
    assert {t.state.name for t in trials.values()} == {"COMPLETE"}


def test_pruned_trial_stops_training(tmp_path, fastmlp_env, fashion_dir):
    """epoch_callback -> trial.report + should_prune -> TrialPruned stops the real train."""
    import optuna
    from fastmlp.trainer import train

    class PruneAfterFirstEpoch(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    spec = spec_of("parameters: {epochs: {value: 3}, num_layers: {value: 1}, "
                   "hidden_size: {values: [4]}, batch_size: {value: 256}}")
    job = {"worker": 1, "count": 1, "trials_dir": str(tmp_path / "trials"),
           "base_config": TrainConfig(wandb_mode="disabled",
                                      data_dir=str(fashion_dir)).to_dict()}

    class NoLock:
        exclusive = True

        def release(self):
            pass

    study = optuna.create_study(direction="maximize", pruner=PruneAfterFirstEpoch())
    study.optimize(make_objective(spec, job, NoLock(), train), n_trials=1)
    trial = study.trials[0]
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    run_dir, = (tmp_path / "trials" / "0000").iterdir()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run_dir / "summary.json").exists()


# =============================================================================== faults

# The fault tests signal a trial mid-training (trial_mid_training): with 1-epoch trials a
# trial seen RUNNING could end before the signal arrived.


def test_sigkill_of_a_worker_loses_only_its_trial(tmp_path, sweep_env, fashion_dir):
    spec_file, out = write(tmp_path, SLOW), tmp_path / "out"
    sweep = cli_sweep(sweep_args(spec_file, out, "--count", "4", "--workers", "2",
                                 fashion_dir=fashion_dir), sweep_env)
    victim = wait_for_training(out, sweep)
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    code, stdout, err = finish(sweep)
    study = open_study(out, "slow")
    why = f"victim trial {victim.number}\n" + explained(study, stdout, err)
    assert code == 0, why
    assert f"worker {victim.user_attrs['worker']}: was killed by SIGKILL; its trial " \
           f"{victim.number} is marked FAIL; the other workers go on" in stdout, why
    assert states(study) == {n: ("FAIL" if n == victim.number else "COMPLETE")
                             for n in range(4)}, why
    assert "SIGKILL" in study.trials[victim.number].user_attrs["fail_reason"], why
    assert len(check_trial_runs(study)) == 3


def test_ctrl_c_stops_cleanly_and_the_same_command_continues(tmp_path, sweep_env, fashion_dir):
    spec_file, out = write(tmp_path, SLOW), tmp_path / "out"
    count = 6
    args = sweep_args(spec_file, out, "--count", str(count), "--workers", "2",
                      fashion_dir=fashion_dir)
    # its own process group, like a shell job; Ctrl-C signals the whole group
    sweep = cli_sweep(args, sweep_env, start_new_session=True)
    # Ctrl-C once both workers are training: a worker still loading its kernels may lose the
    # interrupt there and stop only after its first epoch, perhaps past the sweep's grace.
    cut = wait_for_training(out, sweep, workers=2)
    os.killpg(sweep.pid, signal.SIGINT)
    code, stdout, err = finish(sweep)  # the time-out only guards against a hang
    study = open_study(out, "slow")
    why = f"SIGINT during trial {cut.number}\n" + explained(study, stdout, err)
    assert code == 130, why
    assert "run the same command again to continue" in err, why
    interrupted = states(study)
    assert "RUNNING" not in interrupted.values(), why
    assert interrupted[cut.number] == "FAIL", why  # cut short
    assert study.trials[cut.number].user_attrs["fail_reason"] == "interrupted", why
    # each worker stopped by itself: none was killed at the end of the grace, leaving its
    # trial to be failed for it
    assert not [t.number for t in study.trials
                if t.user_attrs.get("fail_reason") == "the sweep was interrupted"], why
    assert len(interrupted) < count, why  # no worker started a trial after the Ctrl-C
    assert not list((out / "workers").glob("*.json"))

    code, stdout, err = run_cli_sweep(args, sweep_env)
    study = open_study(out, "slow")
    why = explained(study, stdout, err)
    assert code == 0, why
    final = states(study)
    assert sorted(final) == list(range(count)) and "RUNNING" not in final.values(), why
    assert {n: final[n] for n in interrupted} == interrupted, why  # old trials untouched


def test_a_swallowed_ctrl_c_still_stops_the_worker(tmp_path, fastmlp_env, fashion_dir,
                                                    monkeypatch):
    """An exception raised in a ctypes callback is printed and dropped. llvmlite calls one
    while Numba loads kernels, so a Ctrl-C there once left a worker training trials until
    --count (with later signals ignored). The worker remembers the signal instead."""
    import optuna

    from fastmlp.sweep import worker as sweep_worker

    # the worker runs in a subprocess: its parent is this process
    job = worker_job(tmp_path, spec_of(TINY, name="tiny"), count=2,
                     shared={"data_dir": str(fashion_dir)}, parent_pid=os.getpid())
    (tmp_path / "job.json").write_text(json.dumps(job, default=str))
    swallowed_then_worker = (
        "import ctypes, os, signal, sys\n"
        "from fastmlp.sweep import worker as sweep_worker\n"
        "sweep_worker._interrupt_once_on(signal.SIGINT, signal.SIGTERM)\n"
        "ctypes.CFUNCTYPE(None)(lambda: os.kill(os.getpid(), signal.SIGINT))()\n"
        "sys.exit(sweep_worker.main([sys.argv[1]]))\n")
    worker = subprocess.run([sys.executable, "-c", swallowed_then_worker,
                             str(tmp_path / "job.json")], cwd=REPO, capture_output=True,
                            text=True, timeout=SWEEP_TIMEOUT)
    assert "Exception ignored" in worker.stderr  # the KeyboardInterrupt was dropped ...
    assert worker.returncode == 130, worker.stderr  # ... yet the worker stopped
    assert open_study(tmp_path, "tiny").trials == []  # before claiming a trial

    # in a running trial, it stops the training after the epoch
    monkeypatch.setattr(sweep_worker, "_stop_signalled", True)
    on_epoch = sweep_worker.report_epochs(optuna.create_study().ask(), "val_accuracy")
    with pytest.raises(KeyboardInterrupt):
        on_epoch({"val_accuracy": 0.5})


def test_trials_left_running_by_a_killed_sweep_are_failed_on_restart(tmp_path, sweep_env,
                                                                      fashion_dir):
    spec_file, out = write(tmp_path, SLOW), tmp_path / "out"
    args = sweep_args(spec_file, out, "--count", "2", fashion_dir=fashion_dir)
    sweep = cli_sweep(args, sweep_env)
    victim = wait_for_training(out, sweep)
    sweep.kill()  # the whole sweep dies at once: parent and worker
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    sweep.communicate()

    code, stdout, err = run_cli_sweep(args, sweep_env)
    study = open_study(out, "slow")
    why = f"victim trial {victim.number}\n" + explained(study, stdout, err)
    assert code == 0, why
    assert f"marked FAIL the trial(s) {victim.number} left RUNNING" in stdout, why
    assert states(study) == {victim.number: "FAIL", 1 - victim.number: "COMPLETE"}, why


def test_missing_data_fails_before_any_trial(tmp_path, fastmlp_env):
    spec_file, out = write(tmp_path, TINY), tmp_path / "out"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FastMLPError, match="file not found in the given fashion_mnist data"):
        run_sweep(spec_file, count=2, workers=2, output_dir=out, wandb_mode="disabled",
                  shared={"data_dir": str(tmp_path / "empty")}, echo=lambda line: None)
    assert not out.exists()  # failed before the study (or any file) was made


def test_a_ctrl_c_during_a_study_read_waits_for_the_read_to_end():
    """The supervisor holds a Ctrl-C that lands while it reads the study until the read is
    done: raised inside it, the storage's transaction (and SQLite's lock) would stay open and
    keep the workers from recording their trials."""
    from fastmlp.sweep.supervisor import _interrupts_held

    finished = []
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler has run by now: nothing was raised in here
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sweep_takes_a_table_as_train_does(tmp_path, sweep_env):
    """A Parquet table with a text column, an id to --drop and a code to --categorical:
    every trial reads it as `train` does, and the best command repeats the table's flags."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = 300
    shop = rng.choice(["north", "south", "east"], rows)
    code = rng.integers(1, 4, rows)
    x = rng.normal(size=rows)
    price = x + (shop == "north") + 0.5 * code + rng.normal(0, 0.1, rows)
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(rows)], "shop": shop,
                             "code": code, "x": x, "price": price}), tmp_path / "t.parquet")
    spec_file = write(tmp_path, sweep_yaml("grid", 2, 32, metric="val_r2",
                                           hidden_size="{values: [4, 8]}"))
    out = tmp_path / "out"
    code_, stdout, err = run_cli_sweep(
        [str(spec_file), "--output-dir", str(out), "--wandb-mode", "offline",
         "--data", str(tmp_path / "t.parquet"), "--target", "price", "--drop", "id",
         "--categorical", "code"], sweep_env)
    assert code_ == 0, err
    assert "ran 2 trial(s)" in stdout
    command = (out / "best_command.txt").read_text()
    assert "--target price --categorical code --drop id" in command
    summaries = [json.loads(p.read_text()) for p in out.rglob("summary.json")]
    assert len(summaries) == 2 and all(s["task"] == "regression" for s in summaries)
    model = next(out.rglob("model.npz"))
    from fastmlp.model import load_extras

    assert load_extras(model).preprocessing.feature_names[:1] == ["x"]
    assert "code=1" in load_extras(model).preprocessing.feature_names
