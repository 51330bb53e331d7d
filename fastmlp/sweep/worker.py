"""One sweep worker process: `python -m fastmlp.sweep.worker JOB.json`.

`fastmlp sweep` starts W of these as fresh interpreters (spawn semantics: Numba's `omp`
threading layer is not fork-safe), each with its share of the cores in NUMBA_NUM_THREADS /
OMP_NUM_THREADS and in config.threads. A worker claims trials from the shared study until
the study holds --count trials, and runs each as a full `train`:

    lock storage -> count trials -> create trial, tag it with host/pid -> unlock -> train

Signals: the first SIGINT/SIGTERM raises KeyboardInterrupt inside the running trial (Optuna
records it as FAIL) and later ones are ignored, so the clean-up is never interrupted. Library
code may swallow that KeyboardInterrupt (an exception raised in a ctypes callback, which
llvmlite calls while Numba loads kernels, is printed and dropped), so the worker also
remembers the signal and raises again after the trial's next epoch and before claiming a
trial. A SIGKILL loses the running trial; the supervising `fastmlp sweep` marks it FAIL.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path

from ..config import TrainConfig
from ..errors import DivergedError, FastMLPError
from .spec import SWEEPABLE, checked_value, field_type, parse_spec
from .storage import StorageLock, counted_trials, load_study, owner_attrs

EXIT_OK, EXIT_CRASH, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


_stop_signalled = False  # set by the first SIGINT/SIGTERM


class _SurplusTrial(Exception):
    """The study already had --count trials when this one was created (no storage lock)."""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    _interrupt_once_on(signal.SIGINT, signal.SIGTERM)
    try:
        if job["engine"] == "wandb":
            run_wandb_agent(job)
        else:
            run_optuna_worker(job)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except FastMLPError as error:
        _write_error(job, str(error))
        return EXIT_USER_ERROR
    except Exception as error:  # a bug: keep the traceback for the user
        traceback.print_exc()
        _write_error(job, f"crashed: {type(error).__name__}: {error}")
        return EXIT_CRASH
    return EXIT_OK


def _interrupt_once_on(*signals) -> None:
    def interrupt(signum, frame):
        global _stop_signalled
        _stop_signalled = True
        for each in signals:
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt
    for each in signals:
        signal.signal(each, interrupt)


def _raise_if_stop_signalled() -> None:
    """Raise the KeyboardInterrupt of a signal whose first raise library code swallowed."""
    if _stop_signalled:
        raise KeyboardInterrupt


def _write_error(job: dict, message: str) -> None:
    """Leave the one-line error for the supervising `fastmlp sweep` to show."""
    Path(job["error_file"]).write_text(message)


# --------------------------------------------------------------------------- optuna

def run_optuna_worker(job: dict) -> None:
    import optuna

    from ..trainer import train

    # Each finished trial gets one line from _print_result; Optuna's own warnings would
    # repeat it with a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = parse_spec(job["spec"], source=job["spec_source"], name=job["name"])
    study = load_study(job["storage"], spec.name, sampler=make_sampler(spec),
                       pruner=make_pruner(spec))
    lock = StorageLock(job["storage"])
    objective = make_objective(spec, job, lock, train)
    while not _parent_gone(job):
        _raise_if_stop_signalled()
        with lock:  # the objective releases it as soon as its trial exists
            if len(counted_trials(study)) >= job["count"]:
                return
            try:
                study.optimize(objective, n_trials=1, catch=(DivergedError,),
                               callbacks=[_print_result(spec, job["worker"])])
            except _SurplusTrial:
                return


def make_sampler(spec):
    """bayes -> TPE, random -> random, grid -> grid (over the searched parameters)."""
    import optuna

    if spec.method == "grid":
        return optuna.samplers.GridSampler(spec.grid_space())
    if spec.method == "random":
        return optuna.samplers.RandomSampler()
    # constant_liar: trials running in other workers count as "bad so far", so parallel
    # workers do not all pick the same promising point.
    return optuna.samplers.TPESampler(constant_liar=True)


def make_pruner(spec):
    """early_terminate hyperband -> HyperbandPruner (epochs as resource); none -> no pruning."""
    import optuna

    hyperband = spec.early_terminate
    if hyperband is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(
        min_resource=hyperband.min_resource, max_resource=hyperband.max_resource,
        reduction_factor=hyperband.reduction_factor)


def make_objective(spec, job: dict, lock, train):
    """The Optuna objective: one full `train` run per trial; returns the last epoch's metric."""

    def objective(trial):
        for key, value in owner_attrs(job["worker"]).items():
            trial.set_user_attr(key, value)
        surplus = trial.number >= job["count"]  # only possible where the lock is a no-op
        lock.release()
        if surplus:
            trial.set_user_attr("fail_reason", "surplus: the study already had --count trials")
            raise _SurplusTrial()

        config = trial_config(spec, job, trial)
        # The reproducing command leaves the thread count to `train` (all cores).
        trial.set_user_attr("command", _replace(config, threads=None).train_command())
        try:
            # No per-run PNGs (the report plots the sweep; wandb has every epoch's metrics)
            # and no live bars from several workers on one terminal.
            result = train(config, epoch_callback=report_epochs(trial, spec.metric),
                           progress=False, plots=False)
        except FastMLPError as error:
            trial.set_user_attr("fail_reason", str(error))
            raise
        except KeyboardInterrupt:  # further signals are ignored: this write completes
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        trial.set_user_attr("run_dir", str(result.run_dir))
        for key in ("test_accuracy", "test_loss"):
            if result.summary.get(key) is not None:
                trial.set_user_attr(key, float(result.summary[key]))
        return float(result.summary["epochs"][-1][spec.metric])

    return objective


def trial_config(spec, job: dict, trial) -> TrainConfig:
    """The trial's TrainConfig: base settings, the file's constants, the drawn parameters."""
    values = dict(job["base_config"])
    values.update(spec.constants)
    for param in spec.searched:
        values[param.name] = _as_field_type(param.name, param.suggest(trial))
    # Each trial trains into its own directory, numbered like the trial.
    values["output_dir"] = str(Path(job["trials_dir"]) / f"{trial.number:04d}")
    return TrainConfig.from_dict(values).validated()


def report_epochs(trial, metric: str):
    """epoch_callback: report the metric after each epoch; stop the run if Optuna prunes it."""
    import optuna

    epochs_done = 0

    def on_epoch(record: dict) -> None:
        nonlocal epochs_done
        _raise_if_stop_signalled()
        epochs_done += 1  # the step is the number of epochs trained, 1, 2, ...
        value = float(record[metric])
        trial.report(value, epochs_done)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epochs_done}: {metric}={value:.4f}")

    return on_epoch


def _print_result(spec, worker: int):
    def print_result(study, trial) -> None:
        seconds = (trial.duration.total_seconds() if trial.duration else 0.0)
        value = f" {spec.metric}={trial.value:.4f}" if trial.value is not None else ""
        reason = trial.user_attrs.get("fail_reason")
        note = f" ({reason})" if reason and trial.state.name == "FAIL" else ""
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        print(f"[worker {worker}] trial {trial.number} {trial.state.name.lower()}{value} "
              f"in {seconds:.1f}s: {params}{note}", flush=True)
    return print_result


def _parent_gone(job: dict) -> bool:
    """True when the `fastmlp sweep` that started this worker has died (we were orphaned)."""
    return os.getppid() != job["parent_pid"]


# --------------------------------------------------------------------------- wandb

def run_wandb_agent(job: dict) -> None:
    """A wandb agent: the W&B server picks the parameters; each run is a full `train`."""
    import wandb

    from ..trainer import train

    def run_one() -> None:
        params = read_wandb_params(os.environ["WANDB_SWEEP_PARAM_PATH"])
        values = dict(job["base_config"]) | params
        values["output_dir"] = str(Path(job["trials_dir"]) / os.environ.get("WANDB_RUN_ID", "run"))
        # train's wandb.init() joins the agent's run (WANDB_RUN_ID / WANDB_SWEEP_ID are set).
        train(TrainConfig.from_dict(values).validated(), progress=False, plots=False)

    wandb.agent(job["sweep_id"], function=run_one, project=job.get("project"),
                entity=job.get("entity"), count=job["count"])


def read_wandb_params(path: str) -> dict:
    """The run's parameters from the agent's config file ({name: {value: v}})."""
    import yaml

    loaded = yaml.safe_load(Path(path).read_text()) or {}
    params = {}
    for name, entry in loaded.items():
        if name in SWEEPABLE:
            value = entry["value"] if isinstance(entry, dict) else entry
            params[name] = checked_value(name, value, f"wandb parameter {name}")
    return params


# --------------------------------------------------------------------------- helpers

def _as_field_type(name: str, value):
    """Optuna gives ints for int_uniform draws; float settings want floats."""
    kind = field_type(name)
    return float(value) if kind is float else value


def _replace(config: TrainConfig, **changes) -> TrainConfig:
    import dataclasses
    return dataclasses.replace(config, **changes)


if __name__ == "__main__":
    sys.exit(main())
