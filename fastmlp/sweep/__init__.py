"""Hyperparameter sweeps over `train` (`fastmlp sweep FILE.yaml`; the click command is in cli.py).

    spec.py          the sweep file: wandb's sweep YAML read, checked, turned into a search space
    supervisor.py    run_sweep: creates the study, starts the worker processes, supervises them
    worker.py        one worker process (`python -m fastmlp.sweep.worker JOB.json`): claims
                     trials and runs each as a full `train`
    storage.py       the Optuna storage (SQLite or PostgreSQL), its lock, and fault clean-up
    report.py        the results: best-trials table, reproducing command, CSV, PNG plots
    wandb_engine.py  `--engine wandb`: the same file run as a W&B sweep

Importing this package stays cheap (no optuna, wandb or matplotlib): cli.py imports it for
every command. The worker module is not imported here, so `python -m fastmlp.sweep.worker`
runs it only once, as __main__.
"""
from .spec import SweepSpec, load_spec, parse_spec
from .supervisor import (DEFAULT_OUTPUT_ROOT, ENGINES, SweepInterrupted, SweepOutcome,
                         WorkerFailure, base_config, resolve_count, run_sweep,
                         threads_per_worker)

__all__ = [
    "DEFAULT_OUTPUT_ROOT", "ENGINES", "SweepInterrupted", "SweepOutcome", "SweepSpec",
    "WorkerFailure", "base_config", "load_spec", "parse_spec", "resolve_count", "run_sweep",
    "threads_per_worker",
]
