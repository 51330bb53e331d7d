"""One sweep worker process: `python -m fastmlp.sweep.worker JOB.json`.

`fastmlp sweep` starts W of these as fresh interpreters (spawn semantics: Numba's `omp`
threading layer is not fork-safe), each with its share of the cores in NUMBA_NUM_THREADS /
OMP_NUM_THREADS and in config.threads. A worker claims trials from the shared study until
the study holds --count trials (or every point of a finite space has been tried), and runs
each as a full `train` (K of them with --seeds K):

    lock storage -> count trials -> create trial, tag it with host/pid -> draw its point
      -> claim its configuration key, or answer a repeat from the stored result (claims.py)
      -> unlock -> train

Its output (optuna's lines, each epoch's line, tracebacks) goes to a log file of its own in
the sweep's workers/ directory; the supervising `fastmlp sweep` shows the study's progress.

Signals: the first SIGINT/SIGTERM raises KeyboardInterrupt inside the running trial (Optuna
records it as FAIL) and later ones are ignored, so the clean-up is never interrupted. Library
code may swallow that KeyboardInterrupt (an exception raised in a ctypes callback, which
llvmlite calls while Numba loads kernels, is printed and dropped), so the worker also
remembers the signal and raises again after the trial's next epoch and before claiming a
trial. A SIGKILL loses the running trial; the supervising `fastmlp sweep` marks it FAIL.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sys
import traceback
import warnings
from pathlib import Path

from ..config import SETTING, TrainConfig, infer_num_layers, parse_widths
from ..errors import ConfigError, DivergedError, FastMLPError
from . import claims
from .spec import SWEEPABLE, checked_value, field_type, parse_spec
from .storage import StorageLock, counted_trials, load_study, owner_attrs

EXIT_OK, EXIT_CRASH, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


_stop_signalled = False  # set by the first SIGINT/SIGTERM


class _SurplusTrial(Exception):
    """The study already had --count trials when this one was created (no storage lock)."""


class _AnsweredRepeat(Exception):
    """A repeat whose answer is a FAIL: its configuration diverged, or is training now in
    another worker (no result to give yet). Caught by study.optimize: the trial is FAIL."""


class _RefusedPoint(Exception):
    """A point train refuses (a rule across settings: --residual without two equal widths
    in a row). Caught by study.optimize: the trial is FAIL, its configuration held."""


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

def run_optuna_worker(job: dict, train=None) -> None:
    """Claim and run trials until the study holds --count of them or the space is used up.

    `train` stands in for trainer.train (the tests' fake trainings)."""
    import optuna

    if train is None:
        from ..trainer import train

    # Each finished trial gets one line from _print_result; Optuna's own warnings would
    # repeat it with a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = parse_spec(job["spec"], source=job["spec_source"], name=job["name"])
    study = load_study(job["storage"], spec.name, sampler=make_sampler(spec),
                       pruner=make_pruner(spec))
    lock = StorageLock(job["storage"])
    last = {}  # what the objective did with its trial: {"repeat": bool}
    objective = make_objective(spec, job, lock, train, last)
    repeats_in_a_row = 0
    rng = random.Random()
    while not _parent_gone(job):
        _raise_if_stop_signalled()
        with lock:  # the objective releases it as soon as its trial is claimed
            trials = study.get_trials(deepcopy=False)
            if len(counted_trials(trials)) >= job["count"]:
                return
            if repeats_in_a_row >= claims.REPEATS_BEFORE_STEERING or _space_used_up(
                    spec, job, trials):
                point = untried_point(spec, job, trials, rng)
                if point is None:
                    return  # every point of the finite space is tried
                study.enqueue_trial(point, user_attrs={"steered": True})
            last.clear()
            try:
                study.optimize(objective, n_trials=1,
                               catch=(DivergedError, _AnsweredRepeat, _RefusedPoint),
                               callbacks=[_print_result(spec, job["worker"])])
            except _SurplusTrial:
                return
        repeats_in_a_row = repeats_in_a_row + 1 if last.get("repeat") else 0


def _space_used_up(spec, job: dict, trials) -> bool:
    """A cheap test that may say True early: the finite space has no more points than the
    configurations the study holds (untried_point then decides)."""
    size = claims.space_size(spec)
    return size is not None and len(claims.held_keys(trials)) >= size


def untried_point(spec, job: dict, trials, rng=None):
    """A point of the space no trial of the study holds (None: the space is used up)."""
    held = claims.held_keys(trials)
    seeds = job.get("seeds", 1)
    return claims.untried_point(
        spec, lambda point: claims.config_key(config_values(spec, job, point), seeds), held,
        rng)


def space_used_up(spec, job: dict, trials) -> bool:
    """True when every point of a finite space is held by a trial of the study."""
    return _space_used_up(spec, job, trials) and untried_point(spec, job, trials) is None


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


def make_objective(spec, job: dict, lock, train, last=None):
    """The Optuna objective: the trial's configuration trained with each of the --seeds seeds
    (one full `train` run each); returns the mean of their last epochs' metric.

    Called with the storage lock held: it draws the trial's point, then either claims the
    configuration (user attr config_key) or, when a trial of the study already holds it,
    answers from that trial's result without training (user attr repeat_of); then it
    releases the lock."""
    last = {} if last is None else last
    seeds = int(job.get("seeds", 1))

    def objective(trial):
        try:
            for key, value in owner_attrs(job["worker"]).items():
                trial.set_user_attr(key, value)
            try:
                config = trial_config(spec, job, trial)
            except ConfigError as error:  # refused: the point is held, it fails again
                trial.set_user_attr(claims.CONFIG_KEY, claims.config_key(
                    config_values(spec, job, trial.params), seeds))
                trial.set_user_attr(claims.REFUSED, True)
                trial.set_user_attr("fail_reason", str(error))
                raise _RefusedPoint(str(error)) from None
            key = claims.config_key(config.to_dict(), seeds)
            trial.set_user_attr(claims.CONFIG_KEY, key)
            earlier = [t for t in trial.study.get_trials(deepcopy=False)
                       if t.number < trial.number]
            # Without a real lock (other databases) two workers may pass the count check.
            surplus = not lock.exclusive and len(counted_trials(earlier)) >= job["count"]
            original = claims.held_keys(earlier).get(key)
            if original is not None:
                trial.set_user_attr(claims.REPEAT_OF, original.number)
            elif not surplus:
                # The reproducing command keeps the trial's thread count: another count
                # splits the batches into other shards and changes the last digits.
                trial.set_user_attr("command", config.train_command())
                trial.set_user_attr("seeds", seeds)
        finally:
            lock.release()
        last["repeat"] = original is not None
        if original is not None:
            return answer_repeat(trial, original)
        if surplus:
            trial.set_user_attr("fail_reason", "surplus: the study already had --count trials")
            raise _SurplusTrial()
        return train_seeds(trial, config, seeds, spec, job, train)

    return objective


def answer_repeat(trial, original):
    """A repeat's result: the stored result of the trial that trained its configuration."""
    import optuna

    for key in (*(key for key in original.user_attrs if key.startswith("test_")), "value_std",
                "seed_values", "command", "seeds"):
        if key in original.user_attrs:
            trial.set_user_attr(key, original.user_attrs[key])
    state = original.state.name
    if state == "COMPLETE":
        return original.value
    if state == "PRUNED":
        for step, value in sorted(original.intermediate_values.items()):
            trial.report(value, step)
        raise optuna.TrialPruned(f"repeat of pruned trial {original.number}")
    why = ("is training now (its result is not known yet)" if state != "FAIL" else
           "train refused" if original.user_attrs.get(claims.REFUSED) else "diverged")
    trial.set_user_attr("fail_reason", f"repeat of trial {original.number}, which {why}")
    raise _AnsweredRepeat()


def train_seeds(trial, config: TrainConfig, seeds: int, spec, job: dict, train) -> float:
    """Train the configuration with seeds seed, seed+1, ... one after the other.

    Pruning: the first seed reports its metric after each epoch and may be pruned (Hyperband
    decides each rung once). Each later seed trains to the end; after it, the trial's
    per-epoch values become the mean over the seeds trained so far, so the stored learning
    curve (which later trials are compared with) and the objective are means over seeds."""
    curves, finals, tests, run_dirs = [], [], [], []
    for index in range(seeds):
        seed_config = dataclasses.replace(config, seed=config.seed + index)
        if seeds > 1:
            seed_config = dataclasses.replace(seed_config, output_dir=str(
                Path(config.output_dir) / f"seed-{seed_config.seed}"))
        callback = (report_epochs(trial, spec.metric) if index == 0
                    else _stop_if_signalled)
        try:
            # No per-run PNGs (the report plots the sweep; wandb has every epoch's metrics)
            # and no live bars from several workers on one terminal.
            result = train(seed_config, epoch_callback=callback, progress=False, plots=False)
        except DivergedError as error:
            trial.set_user_attr("fail_reason", str(error))
            trial.set_user_attr(claims.DIVERGED, True)
            raise
        except FastMLPError as error:
            trial.set_user_attr("fail_reason", str(error))
            raise
        except KeyboardInterrupt:  # further signals are ignored: this write completes
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        run_dirs.append(str(result.run_dir))
        if index == 0:
            trial.set_user_attr("run_dir", str(result.run_dir))
        curves.append([float(e[spec.metric]) for e in result.summary["epochs"]])
        finals.append(curves[-1][-1])
        if result.summary.get(spec.test_figure) is not None:
            tests.append(float(result.summary[spec.test_figure]))
        if index > 0:
            _store_mean_curve(trial, curves)
    if seeds > 1:
        trial.set_user_attr("run_dirs", run_dirs)
        trial.set_user_attr("seed_values", finals)
        trial.set_user_attr("value_std", _std(finals))
    if tests:
        trial.set_user_attr(spec.test_figure, sum(tests) / len(tests))
        if seeds > 1:
            trial.set_user_attr(f"{spec.test_figure}_std", _std(tests))
    return sum(finals) / len(finals)


def _store_mean_curve(trial, curves: list) -> None:
    """Overwrite the trial's intermediate values with the per-epoch mean over the seeds."""
    storage = trial.study._storage
    for step in range(1, min(len(c) for c in curves) + 1):
        mean = sum(c[step - 1] for c in curves) / len(curves)
        storage.set_trial_intermediate_value(trial._trial_id, step, mean)


def _std(values: list) -> float:
    """The sample standard deviation (0 for a single value)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def _stop_if_signalled(record: dict) -> None:
    """epoch_callback of the seeds after the first: no pruning, but honour a Ctrl-C."""
    _raise_if_stop_signalled()


def trial_config(spec, job: dict, trial) -> TrainConfig:
    """The trial's TrainConfig: base settings, the file's constants, the drawn parameters."""
    drawn = {param.name: param.suggest(trial) for param in spec.searched}
    values = config_values(spec, job, drawn)
    # Each trial trains into its own directory, numbered like the trial.
    values["output_dir"] = str(Path(job["trials_dir"]) / f"{trial.number:04d}")
    return TrainConfig.from_dict(values).validated()


def config_values(spec, job: dict, point: dict) -> dict:
    """The settings of a point of the space: base settings (with the wandb group, the
    sweep's name), the file's constants, the point (validated: choices in their canonical
    spelling; as they are where a rule across settings refuses them)."""
    values = dict(job["base_config"])
    values.update(spec.constants)
    values.update(point)
    values = {name: _as_field_type(name, value) for name, value in values.items()}
    # per-layer widths without a num_layers of the file's: as many layers as widths
    values = infer_num_layers(values, num_layers_given=any(p.name == "num_layers"
                                                           for p in spec.params))
    config = TrainConfig.from_dict(values)
    try:
        config = config.validated()
    except ConfigError:  # a point train refuses (trial_config says why): its key all the same
        pass
    return dataclasses.asdict(config)


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
    """Optuna gives ints for int_uniform draws; float settings want floats; widths are kept
    as text ("512 256") in the study."""
    if name in SETTING and SETTING[name].many and isinstance(value, str):
        return parse_widths(value)
    kind = field_type(name) if name in SETTING else None
    return float(value) if kind is float and value is not None else value


if __name__ == "__main__":
    sys.exit(main())
