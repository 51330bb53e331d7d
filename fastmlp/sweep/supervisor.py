"""`fastmlp sweep FILE.yaml`: hyperparameter sweeps over `train`, in parallel and resumable.

    fastmlp sweep sweeps/cs6910.yaml --count 50 --workers 2
    fastmlp sweep sweeps/cs6910.yaml --count 50 --storage postgresql://u:p@db/sweeps  # many machines
    fastmlp sweep sweeps/cs6910.yaml --report

The file is a wandb sweep config (spec.py). The default engine is Optuna (bayes -> TPE,
random -> random, grid -> grid; hyperband early termination -> HyperbandPruner) with the
study in an SQLite file in the sweep's output directory (default sweeps-out/NAME/). This
process creates the study, warms the Numba cache, then starts W worker processes
(worker.py) that share the cores and claim trials until the study holds --count;
it watches them, marks a killed worker's trial FAIL, shows the study's progress (live.py:
a live table on a terminal, one line per finished trial otherwise; the workers' own output
goes to workers/worker-N.log), and writes the report (report.py) at the end. No
configuration is trained twice (claims.py); --seeds K trains each with K seeds. `--engine wandb` runs the same file as a W&B sweep (wandb_engine.py).
The click command is in cli.py; this module raises FastMLPError for user errors and
SweepInterrupted on Ctrl-C/SIGTERM.

Imports of optuna, wandb and matplotlib stay inside functions: importing this module
(which `fastmlp train` does, through cli.py) must stay cheap.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..config import SETTING, TrainConfig, with_table_defaults
from ..errors import ConfigError, FastMLPError
from .spec import SweepSpec, load_spec

DEFAULT_OUTPUT_ROOT = "sweeps-out"
ENGINES = ("optuna", "wandb")
STOP_GRACE_SECONDS = 30      # after Ctrl-C, wait this long for workers to record their trials
POLL_SECONDS = 0.2
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # so workers import this fastmlp


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the sweep; the storage is consistent and resumable."""


@dataclass
class WorkerFailure:
    worker: int
    message: str
    user_error: bool        # a FastMLPError (bad data dir, ...) rather than a crash or kill


@dataclass
class SweepOutcome:
    name: str
    out_dir: Path
    storage: Optional[str]          # the Optuna storage URL (None for --engine wandb)
    trials_before: int = 0          # trials in the study when this command started
    trials_after: int = 0
    seconds: float = 0.0            # wall time the workers ran
    workers: int = 0
    failures: list = field(default_factory=list)
    report: object = None           # report.Report
    sweep_id: Optional[str] = None  # --engine wandb
    repeats: int = 0                # repeat proposals answered without training (whole study)
    space_used_up: bool = False     # every point of a finite space has been tried

    @property
    def trials_per_hour(self) -> Optional[float]:
        ran = self.trials_after - self.trials_before
        return ran * 3600.0 / self.seconds if self.seconds > 0 and ran > 0 else None


@dataclass
class _Worker:
    number: int
    process: object         # subprocess.Popen
    job_file: Path
    error_file: Path
    log_file: Path


# --------------------------------------------------------------------------- the API

def run_sweep(spec_path, count: Optional[int] = None, workers: int = 1,
              storage: Optional[str] = None, engine: str = "optuna",
              name: Optional[str] = None, *, report: bool = False,
              output_dir=None, wandb_mode: Optional[str] = None,
              shared: Optional[dict] = None, seeds: int = 1, live: Optional[bool] = False,
              echo: Callable[[str], None] = print) -> SweepOutcome:
    """Run (or continue) a sweep, or with report=True only write its report.

    count is the total number of trials wanted in the study: finished, pruned and failed
    trials all count (repeats, answered without training, do not), so running the same call
    again continues where it stopped. shared: settings every trial shares that the file does
    not sweep, by their names in the settings table (dataset, data_dir, data, label_column,
    test_data, test_fraction, teacher, ...; None values are left out). seeds: train each
    configuration with seeds seed, ..., seed+seeds-1 and optimise their mean. live: a live table on the
    terminal (None: when stdout is one) instead of one line per finished trial.
    Raises FastMLPError for user errors and SweepInterrupted on Ctrl-C/SIGTERM.
    """
    engine = (engine or "optuna").lower()
    if engine not in ENGINES:
        raise ConfigError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if workers < 1:
        raise ConfigError(f"--workers: {workers} must be >= 1")
    if seeds < 1:
        raise ConfigError(f"--seeds: {seeds} must be >= 1")
    spec = load_spec(spec_path, name)
    out_dir = Path(output_dir) if output_dir else Path(DEFAULT_OUTPUT_ROOT) / spec.name
    if engine == "wandb":
        if storage:
            raise ConfigError("--storage is for the optuna engine; a W&B sweep lives on the "
                              "W&B server")
        if report:
            raise ConfigError("--report reads the Optuna study; a W&B sweep's results are on "
                              "its W&B page")
        if seeds != 1:
            raise ConfigError("--seeds is for the optuna engine; a W&B sweep runs each "
                              "configuration once")
        return _run_wandb_sweep(spec, count, workers, out_dir, wandb_mode, shared, echo)
    return _run_optuna_sweep(spec, count, workers, storage, out_dir, report, wandb_mode,
                             shared, seeds, live, echo)


def resolve_count(count: Optional[int], spec: SweepSpec, echo=print) -> int:
    """--count, else the file's run_cap, else the grid size; never more than the grid."""
    if count is None:
        count = spec.default_count()
        if count is None:
            raise ConfigError(f"give --count N (the total number of trials wanted) or "
                              f"run_cap in {spec.source}")
    if count < 1:
        raise ConfigError(f"--count: {count} must be >= 1")
    if spec.method == "grid" and count > spec.grid_size:
        echo(f"the grid has {spec.grid_size} points: running {spec.grid_size} trials, "
             f"not {count}")
        count = spec.grid_size
    return count


def base_config(spec: SweepSpec, shared: Optional[dict] = None, *, wandb_mode="offline",
                threads=None, group=None) -> TrainConfig:
    """The settings every trial shares before the file's parameters are applied: the
    defaults, then `shared` (see run_sweep)."""
    shared = shared_settings(shared)
    swept = {p.name for p in spec.params}
    for name in shared:
        # --data replaces -d/--dataset: a file that sweeps the dataset cannot take it either
        clash = "dataset" if name == "data" else name
        if clash in swept:
            raise ConfigError(f"{SETTING[name].long}: {spec.source} already sets {clash}; "
                              "remove one of them")
    values = with_table_defaults({**TrainConfig().to_dict(), **shared}, given=shared)
    values.update(wandb_mode=wandb_mode, threads=threads)
    if spec.project:
        values["wandb_project"] = spec.project
    if spec.entity:
        values["wandb_entity"] = spec.entity
    return dataclasses.replace(TrainConfig.from_dict(values).validated(), group=group)


def shared_settings(shared: Optional[dict]) -> dict:
    """The given (not None) settings of `shared`, each checked to be a setting's name."""
    unknown = sorted(set(shared or {}) - set(SETTING))
    if unknown:
        raise ValueError(f"not settings: {', '.join(unknown)}")
    return {name: value for name, value in (shared or {}).items() if value is not None}


def threads_per_worker(workers: int) -> int:
    """Each worker's share of this process's cores (at least one)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


# --------------------------------------------------------------------------- optuna engine

def _run_optuna_sweep(spec, count, workers, storage, out_dir, report_only, wandb_mode,
                      shared, seeds, live, echo) -> SweepOutcome:
    from .claims import repeats, space_size
    from .report import write_report
    from .storage import (counted_trials, create_or_load_study, fail_orphaned_trials,
                          storage_url)
    from .worker import space_used_up

    url = storage_url(storage, out_dir)
    if report_only:
        return _report_only(spec, url, out_dir, echo)
    total = resolve_count(count, spec, echo)
    base = base_config(spec, shared, wandb_mode=wandb_mode or "offline", group=spec.name)
    _prepare_data(spec, base)  # bad flags or data fail before any file
    out_dir.mkdir(parents=True, exist_ok=True)
    _quiet_optuna()
    study = create_or_load_study(url, spec, seeds=seeds)
    orphans = fail_orphaned_trials(study)
    if orphans:
        echo(f"marked FAIL the trial(s) {_numbers(orphans)} left RUNNING by a process that "
             "is gone")
    outcome = SweepOutcome(name=spec.name, out_dir=out_dir, storage=url,
                           trials_before=len(counted_trials(study)))
    remaining = total - outcome.trials_before
    # what the workers need to tell one configuration from another (claims.config_key)
    keys_job = {"base_config": dataclasses.asdict(base), "seeds": seeds}
    if remaining <= 0:
        echo(f"sweep {spec.name} already has {outcome.trials_before} trials "
             f"(--count {total}); nothing to run")
    elif space_used_up(spec, keys_job, study.get_trials(deepcopy=False)):
        outcome.space_used_up = True
        echo(f"sweep {spec.name} has tried every one of the {space_size(spec)} "
             "configurations of its search space; nothing to run")
    else:
        outcome.workers = min(workers, remaining)
        threads = threads_per_worker(outcome.workers)
        base = dataclasses.replace(base, threads=threads)
        echo(f"sweep {spec.name}: {outcome.trials_before} of {total} trials done; "
             f"{outcome.workers} worker(s) x {threads} thread(s); storage {_shown(url)}; "
             f"output {out_dir}/")
        _warm_numba_cache(spec, base, echo)
        job = {
            "engine": "optuna", "storage": url, "count": total,
            "spec": spec.raw, "spec_source": spec.source, "name": spec.name,
            "base_config": dataclasses.asdict(base), "trials_dir": str(out_dir / "trials"),
            "seeds": seeds,
        }
        try:
            outcome.seconds, outcome.failures = _run_workers(
                job, outcome.workers, threads, out_dir, echo, study=study, spec=spec,
                total=total, live=live)
        except SweepInterrupted:
            held = len(counted_trials(study))
            write_report(study, spec, out_dir, echo)
            raise SweepInterrupted(f"interrupted: the study holds {held} of {total} trials; "
                                   "run the same command again to continue") from None
    trials = study.get_trials(deepcopy=False)
    outcome.trials_after = len(counted_trials(trials))
    outcome.repeats = len(repeats(trials))
    if outcome.workers and outcome.trials_after < total and space_used_up(spec, keys_job,
                                                                          trials):
        outcome.space_used_up = True
        echo(f"every one of the {space_size(spec)} configurations of the search space has "
             f"been tried: the sweep ends with {outcome.trials_after} trained trials, not "
             f"--count {total}")
    outcome.report = write_report(study, spec, out_dir, echo)
    _echo_rate(outcome, echo)
    _raise_if_all_failed(outcome)
    return outcome


def _report_only(spec, url: str, out_dir: Path, echo) -> SweepOutcome:
    """--report: the report of the study as it stands; never creates a study."""
    from .report import write_report
    from .storage import StorageError, load_study, sqlite_file

    database = sqlite_file(url)
    if database is not None and not database.exists():
        raise StorageError(f"no sweep {spec.name!r} yet: {database} does not exist "
                           "(run the sweep first, or give --output-dir/--storage)")
    study = load_study(url, spec.name)
    outcome = SweepOutcome(name=spec.name, out_dir=out_dir, storage=url,
                           trials_before=len(study.trials), trials_after=len(study.trials))
    outcome.report = write_report(study, spec, out_dir, echo)
    return outcome


def _shown(url: str) -> str:
    from .storage import redacted
    return redacted(url)


def _quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _check_metric(spec: SweepSpec, task: str) -> None:
    """The sweep's metric is a figure that the data's task records (metrics.RECORDED)."""
    from ..metrics import RECORDED

    if spec.metric not in RECORDED[task]:
        raise ConfigError(f"{spec.source}: metric {spec.metric!r}: {task} runs record "
                          f"{', '.join(RECORDED[task])}")


def _prepare_data(spec: SweepSpec, base: TrainConfig) -> None:
    """Find every dataset the trials use before any worker starts: a wrong --data-dir fails
    here with one line (not as a failed trial per worker), and a needed download happens
    once, not in several workers at the same time. Your own data (--data) is read in full
    here as a check (each trial reads it again), so bad data fails with its one line before
    any trial."""
    from ..data import find_dataset_dir, load_dataset
    from ..errors import DataError, ModelFileError

    if base.teacher is not None:  # a missing or foreign --teacher fails once, here
        from ..inference import open_model

        try:
            open_model(base.teacher)
        except ModelFileError as exc:
            raise ModelFileError(f"--teacher: {exc}") from None
    if base.data is not None:
        from ..owndata import load_own_data

        _check_metric(spec, load_own_data(base).task)
        return
    _check_metric(spec, "classification")
    swept = next((p for p in spec.params if p.name == "dataset"), None)
    names = (set(swept.values) if swept is not None else {base.dataset})
    for name in sorted(names):
        try:
            find_dataset_dir(name, base.data_dir)
        except DataError:
            if base.data_dir is not None:
                raise
            load_dataset(name)  # downloads into the cache, or fails with one line


def _warm_numba_cache(spec: SweepSpec, base: TrainConfig, echo) -> None:
    """Compile (or load) every kernel once here, so workers never compile concurrently
    (concurrent first compiles can corrupt Numba's on-disk cache)."""
    from ..engine import warm_up

    started = time.perf_counter()
    swept = next((p for p in spec.params if p.name == "dtype"), None)
    for dtype in sorted(set(swept.values) if swept is not None else {base.dtype}):
        warm_up(dtype=dtype)
    echo(f"numba kernels ready in {time.perf_counter() - started:.1f}s")


def _echo_rate(outcome: SweepOutcome, echo) -> None:
    ran = outcome.trials_after - outcome.trials_before
    if ran > 0 and outcome.seconds > 0:
        echo(f"ran {ran} trial(s) in {outcome.seconds:.1f}s with {outcome.workers} worker(s): "
             f"{outcome.trials_per_hour:.0f} trials/hour; {outcome.repeats} repeat(s) "
             "avoided in the study")


def _raise_if_all_failed(outcome: SweepOutcome) -> None:
    """A user error that stopped every worker (bad data dir, ...) is the command's error."""
    user_errors = [f for f in outcome.failures if f.user_error]
    if user_errors and len(user_errors) == outcome.workers:
        raise FastMLPError(user_errors[0].message)


# --------------------------------------------------------------------------- wandb engine

def _run_wandb_sweep(spec, count, workers, out_dir, wandb_mode, shared, echo) -> SweepOutcome:
    from .wandb_engine import check_wandb_ready, create_wandb_sweep, wandb_sweep_config

    check_wandb_ready(wandb_mode)  # before anything slow: no prompt, no 100 s retry
    total = resolve_count(count, spec, echo)
    threads = threads_per_worker(workers)
    base = base_config(spec, shared, wandb_mode="online", threads=threads)
    _prepare_data(spec, base)  # before the sweep exists on the server
    config = wandb_sweep_config(spec, total, shared_settings(shared))
    sweep_id = create_wandb_sweep(config, project=base.wandb_project, entity=spec.entity)
    echo(f"W&B sweep {sweep_id} created; {workers} agent(s) x {threads} thread(s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    _warm_numba_cache(spec, base, echo)
    job = {
        "engine": "wandb", "sweep_id": sweep_id, "count": total,
        "project": base.wandb_project, "entity": spec.entity,
        "base_config": dataclasses.asdict(base), "trials_dir": str(out_dir / "trials"),
    }
    outcome = SweepOutcome(name=spec.name, out_dir=out_dir, storage=None, sweep_id=sweep_id,
                           workers=workers)
    try:
        outcome.seconds, outcome.failures = _run_workers(job, workers, threads, out_dir, echo)
    except SweepInterrupted:
        raise SweepInterrupted(f"interrupted: W&B sweep {sweep_id} keeps its runs; "
                               f"`wandb agent {sweep_id}` continues it") from None
    _raise_if_all_failed(outcome)
    return outcome


# --------------------------------------------------------------------------- workers

def _run_workers(job: dict, n_workers: int, threads: int, out_dir: Path, echo,
                 study=None, spec=None, total=None, live=False) -> tuple:
    """Start the worker processes, wait for them; (seconds, [WorkerFailure]).

    With a study, its progress is shown meanwhile (live.SweepView)."""
    from .live import SweepView

    workers = []
    started = time.perf_counter()
    previous_sigterm = _sigterm_interrupts()
    view = (SweepView(study, spec, total, echo, live=live) if study is not None
            else _NoView(echo))
    try:
        with view:
            try:
                workers = [_start_worker(job, number, threads, out_dir)
                           for number in range(1, n_workers + 1)]
                failures = _supervise(workers, study, view)
            except KeyboardInterrupt:
                view.echo("interrupted: stopping the workers; their running trials are "
                          "recorded as FAIL")
                _stop_workers(workers, study)
                raise SweepInterrupted() from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous_sigterm)
        for worker in workers:
            worker.job_file.unlink(missing_ok=True)
            worker.error_file.unlink(missing_ok=True)
    return time.perf_counter() - started, failures


class _NoView:
    """--engine wandb: no study to watch; messages go straight to echo."""

    def __init__(self, echo):
        self.echo = echo

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def update(self, force: bool = False) -> None:
        pass


def _start_worker(job: dict, number: int, threads: int, out_dir: Path) -> _Worker:
    import subprocess

    jobs_dir = out_dir / "workers"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{os.getpid()}-{number}"  # several `fastmlp sweep`s may share the directory
    job_file, error_file = jobs_dir / f"{stem}.json", jobs_dir / f"{stem}.error"
    error_file.unlink(missing_ok=True)
    worker_job = dict(job, worker=number, error_file=str(error_file), parent_pid=os.getpid())
    job_file.write_text(json.dumps(worker_job, default=str))
    # The worker's own output (epoch lines, tracebacks) goes to its log file, appended to
    # by each sweep that uses this directory; the terminal shows the study's progress.
    log_file = jobs_dir / f"worker-{number}.log"
    with open(log_file, "a") as log:
        log.write(f"--- fastmlp sweep (pid {os.getpid()}) started worker {number} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        # A fresh interpreter (not fork), in its own session: a terminal's Ctrl-C reaches
        # only this process, which forwards it once, so a worker's clean-up is never
        # interrupted.
        process = subprocess.Popen(
            [sys.executable, "-m", "fastmlp.sweep.worker", str(job_file)],
            env=_worker_env(threads), start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT)
    return _Worker(number, process, job_file, error_file, log_file)


def _worker_env(threads: int) -> dict:
    env = dict(os.environ)
    for variable in THREAD_VARIABLES:
        env[variable] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"  # trial lines appear as they happen
    return env


def _supervise(workers: list, study, view) -> list:
    """Wait for every worker; when one dies, fail its running trial and let the rest go on.
    Meanwhile the view shows the study's progress."""
    failures = []
    running = list(workers)
    while running:
        for worker in list(running):
            code = worker.process.poll()
            if code is None:
                continue
            running.remove(worker)
            with _interrupts_held():
                failure = _worker_ended(worker, code, study)
            if failure is not None:
                failures.append(failure)
                stopped = "stopped: " if failure.user_error else ""
                view.echo(f"worker {worker.number}: {stopped}{failure.message}")
        with _interrupts_held():
            view.update()
        time.sleep(POLL_SECONDS)
    return failures


@contextlib.contextmanager
def _interrupts_held():
    """A block that reads or writes the study: a Ctrl-C (or SIGTERM) arriving inside it is
    raised when it ends. Raised in the middle of a read, it would leave the storage's
    transaction open, and SQLite's lock held would keep every worker from recording its
    trial within the stop's grace."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = {number: signal.signal(number, lambda signum, frame: held.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held:
            raise KeyboardInterrupt


def _worker_ended(worker: _Worker, code: int, study) -> Optional[WorkerFailure]:
    """What a worker's exit code means; fails the trial a killed worker left RUNNING."""
    from .worker import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR

    if code in (EXIT_OK, EXIT_INTERRUPTED):
        return None
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    elif worker.error_file.exists():
        how = worker.error_file.read_text()
    else:
        how = f"exited {code} (its output is in {worker.log_file})"
    failed = []
    if study is not None:
        from .storage import fail_trials_of_process
        failed = fail_trials_of_process(study, worker.process.pid,
                                        f"worker {worker.number} {how}")
    if code == EXIT_USER_ERROR:
        return WorkerFailure(worker.number, how, user_error=True)
    lost = f"; its trial {_numbers(failed)} is marked FAIL" if failed else ""
    return WorkerFailure(worker.number, f"{how}{lost}; the other workers go on",
                         user_error=False)


def _stop_workers(workers: list, study) -> None:
    """Forward the interrupt to each worker, wait, kill stragglers, fail what they left."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    try:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # subprocess.TimeoutExpired
                worker.process.kill()
                worker.process.wait()
        if study is not None:
            from .storage import fail_trials_of_process
            for worker in workers:
                fail_trials_of_process(study, worker.process.pid, "the sweep was interrupted")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _sigterm_interrupts():
    """Treat SIGTERM like Ctrl-C while workers run; returns the previous handler."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signal.SIGTERM)  # only the main thread may set handlers
    return signal.signal(signal.SIGTERM, interrupt)


def _numbers(numbers: list) -> str:
    return ", ".join(str(n) for n in numbers)
