"""A training run, told as a story: read the data, start or resume the run directory, train
epoch by epoch, test, and write the results.

    train(config) -> RunResult(run_dir, summary)

Each epoch is ONE compiled call (engine.run_epoch). On a terminal the call runs in a worker
thread (it holds no GIL) while the main thread draws a progress bar (display.py). The run
directory's files are written by rundir.RunDirectory, wandb is reached through tracking.py.

An ensemble (--ensemble K) trains K members side by side on the same splits: member k has
its own TrainState and shuffle generator and the seed --seed + k (config.member(k)), so
member 0 is the run of one network. Each epoch runs every member's compiled epoch, then
validates the ensemble (the members' outputs averaged: engine.score_params on the (K, P)
parameters); --patience, --keep best and --monitor watch that, and the test set and
model.npz get all K.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import NO_AUGMENTATION, TrainConfig, flag_name
from .data import load_splits
from .display import EpochDisplay
from .engine import (TrainState, confusion_matrix, run_epoch, score_params, thread_limits,
                     warm_up)
from .errors import ConfigError, DataError, DivergedError
from .metrics import TASK_METRICS
from .model import Layout, init_params
from .owndata import load_own_data
from .rundir import BestEpoch, RunDirectory, stacked


@dataclass
class RunResult:
    run_dir: Path
    summary: dict


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the run directory keeps the last completed epoch's checkpoint."""

    def __init__(self, run_dir):
        import shlex

        super().__init__(f"resume with  fastmlp train --resume {shlex.quote(str(run_dir))}")
        self.run_dir = Path(run_dir)


def train(config: TrainConfig | None, *, epoch_callback=None, progress=None, resume_dir=None,
          plots=True) -> RunResult:
    """Train one model as `config` says and write its results into a new run directory.

    resume_dir: continue that unfinished run from its checkpoint; `config` is then None (the
    saved configuration) or a mapping of the settings typed again, which must keep every
    setting that changes the numbers (config.resume_config). plots: draw the learning curves
    and the test confusion matrix into the run directory at the end (and log them to wandb).
    epoch_callback(record) is called after every epoch (sweeps report and prune there).
    Ctrl-C raises TrainingInterrupted (a KeyboardInterrupt) naming the resume command.
    """
    from .tracking import preload_wandb

    if resume_dir is not None:
        typed = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        run = RunDirectory.resume(resume_dir, typed)
        config = run.config
    else:
        config = config.validated()
    preload_wandb(config.wandb_mode)
    with thread_limits(config.threads):
        own = load_own_data(config) if config.data is not None else None  # --data PATH
        decided = None  # the task that --task auto found in the data, said once it trains
        if own is not None and config.task == "auto":
            config = dataclasses.replace(config, task=own.task).validated()
            decided = f"task: {own.task} ({own.task_reason}); loss {config.loss}"
        splits = load_splits(config, own, consume=True)
        own = None  # the splits hold what training needs: a large table's memory back
        layout = Layout(splits.layer_sizes(config.hidden_widths), config.norm)
        if config.augment != NO_AUGMENTATION and splits.image_shape is None:
            raise ConfigError(f"--augment: shifts and flips need images; {config.data} is a "
                              f"table of {layout.sizes[0]} features")
        if config.deformations and splits.image_shape is None:
            raise ConfigError(f"{flag_name(config.deformations[0])}: deformations need images; "
                              f"{config.data} is a table of {layout.sizes[0]} features")
        soft_targets, teacher_sha256 = _teacher_targets(config, splits)  # --teacher, or None
        if resume_dir is not None and run.checkpoint.teacher_sha256 != teacher_sha256:
            raise DataError(f"{config.teacher}: the teacher has changed since the run started "
                            f"(its SHA-256 differs); --resume needs the same teacher file")
        if resume_dir is not None and tuple(run.checkpoint.sizes) != layout.sizes:
            raise DataError(f"{config.data}: the data has changed since the run started (its "
                            f"network is {'-'.join(map(str, layout.sizes))} now, was "
                            f"{'-'.join(map(str, run.checkpoint.sizes))})")
        members = [config.member(k) for k in range(config.ensemble)]
        if resume_dir is None:
            states = [TrainState.fresh(init_params(layout, config.weight_init,
                                                   np.random.default_rng([member.seed, 0]),
                                                   np.dtype(config.dtype)))
                      for member in members]
            shuffle_rngs = [np.random.default_rng([member.seed, 1]) for member in members]
            epochs = []
            best = BestEpoch(0, stacked([state.params for state in states]).copy(),
                             monitor=config.monitor)
        else:
            saved = run.checkpoint
            rows = (lambda buffer: [buffer]) if config.ensemble == 1 else list
            states = [TrainState(params, state1, state2, saved.step) for params, state1, state2
                      in zip(rows(saved.params), rows(saved.state1), rows(saved.state2))]
            shuffle_rngs = saved.shuffle_rngs()
            epochs = list(saved.epochs)
            best = saved.best
        compile_seconds = warm_up(config.dtype)
        if resume_dir is None:
            run = RunDirectory.create(config)
        run.teacher_sha256 = teacher_sha256
        display = EpochDisplay(progress, config.epochs)
        wandb_run = None
        try:
            if run.resumed:
                run.rewrite_metrics(epochs)
            else:
                # epoch 0: an early Ctrl-C is resumable too
                run.save_checkpoint(layout.sizes, states, shuffle_rngs, epochs, best)
            # Online, wandb follows the run live (and a login or network problem is said at
            # once). Offline, nobody watches the files while they are written: wandb starts
            # when training is done, so it never takes a core from the epochs.
            if decided is not None:
                display.note(decided)
            if soft_targets is not None:
                display.note(f"teacher: {config.teacher} (temperature {config.temperature}, "
                             f"weight {config.distill_weight})")
            live = config.wandb_mode == "online"
            if live:
                wandb_run = _start_wandb(config, run, epochs)
                wandb_run.ready()
            for epoch in range(len(epochs) + 1, config.epochs + 1):
                if _out_of_patience(config, epochs, best):
                    display.note(f"stopped early: no better {config.monitor} in "
                                 f"{config.patience} epochs since epoch {best.epoch}")
                    break
                record = _train_one_epoch(epoch, states, layout, splits, members,
                                          shuffle_rngs, display, soft_targets)
                epochs.append(record)
                best.offer(record, stacked([state.params for state in states]))
                run.save_checkpoint(layout.sizes, states, shuffle_rngs, epochs, best)
                run.append_metrics(record)
                if live:
                    wandb_run.log_epoch(record)
                display.epoch_line(record)
                if epoch_callback is not None:
                    epoch_callback(record)

            kept_epoch, kept_params = ((best.epoch, best.params) if config.keep == "best"
                                       else (len(epochs),
                                             stacked([state.params for state in states])))
            test = score_params(kept_params, layout, splits.x_test, splits.y_test, config,
                                splits.w_test, splits.target_scaling)
            summary = {
                "run_name": run.name, "config": config.to_dict(),
                "train_command": config.train_command(), "num_params": layout.num_params * config.ensemble,
                "epochs": epochs, "kept_epoch": kept_epoch, "best_epoch": best.epoch,
                "stopped_early": len(epochs) < config.epochs,
                "compile_seconds": compile_seconds, "task": config.task,
                **{f"test_{name}": test[name] for name in ("loss",) + TASK_METRICS[config.task]},
                "class_names": list(splits.class_names)}
            if config.teacher is not None:
                summary["teacher_sha256"] = teacher_sha256
            matrix = None
            if config.task == "classification":
                matrix = confusion_matrix(splits.y_test, test["predictions"],
                                          len(splits.class_names))
                summary["confusion_matrix"] = matrix.tolist()
            if config.data is not None and splits.image_shape is not None:  # own images:
                # predict reads images of this shape (the registry knows its datasets')
                summary["image_shape"] = list(splits.image_shape)
            # pictures at the end: they never slow the epochs down
            regression = None
            if config.task == "regression":  # the test targets and predictions, data units
                regression = (test["truth"], test["outputs"])
            images = (run.draw_pictures(epochs, matrix, splits.class_names, regression)
                      if plots else {})
            run.finish(layout, kept_params, splits.class_names, summary, splits.target_scaling,
                       splits.preprocessing)
            if not live:
                wandb_run = _start_wandb(config, run, epochs)
            wandb_run.log_results(summary, splits.y_test, test["predictions"], images)
            wandb_run.finish()
        except BaseException as exc:
            if wandb_run is not None:
                wandb_run.finish(exit_code=1)
            interrupted = isinstance(exc, KeyboardInterrupt) and run.saved_epochs >= 0
            run.abandon(interrupted)
            if interrupted:
                raise TrainingInterrupted(run.path) from None
            raise
    return RunResult(run.path, summary)


def _start_wandb(config, run, epochs: list):
    """The run's wandb run, with the epochs done so far (a resumed run's history starts at
    epoch 1 too)."""
    from .tracking import WandbRun

    wandb_run = WandbRun.for_training(config, run.name, run.path.parent)
    for record in epochs:
        wandb_run.log_epoch(record)
    return wandb_run


def _out_of_patience(config, epochs: list, best: BestEpoch) -> bool:
    """--patience N: N epochs have passed since the best --monitor figure."""
    return config.patience > 0 and len(epochs) - best.epoch >= config.patience


def _teacher_targets(config, splits) -> tuple:
    """(the teacher's soft targets (N, K) for the training rows, the SHA-256 of its file) with
    --teacher; (None, "") without. The teacher (one model file; Model.soft_targets is the one
    place its outputs are made) must take the same inputs and have the same classes, in the
    same order; it sees the training rows as they are (no augmentation, no dropout)."""
    if config.teacher is None:
        return None, ""
    import hashlib

    from .config import flag_name
    from .data import model_inputs
    from .errors import ModelFileError
    from .inference import open_model

    flag = flag_name("teacher")
    try:
        teacher = open_model(config.teacher)
        digest = hashlib.sha256(Path(config.teacher).read_bytes()).hexdigest()
    except ModelFileError as exc:
        raise ModelFileError(f"{flag}: {exc}") from None
    except OSError as exc:
        raise ModelFileError(f"{flag}: {config.teacher}: cannot read ({exc.strerror or exc})") \
            from None
    where = f"{flag}: {config.teacher}:"
    if teacher.task != "classification":
        raise ModelFileError(f"{where} a {teacher.task} model; a teacher gives class "
                             "probabilities (a classifier's)")
    width = splits.pixels_train.shape[1]
    if teacher.layout.sizes[0] != width:
        raise ModelFileError(f"{where} it takes {teacher.layout.sizes[0]} inputs, this data "
                             f"has {width}")
    if tuple(teacher.class_names) != tuple(splits.class_names):
        raise ModelFileError(f"{where} its classes ({', '.join(teacher.class_names[:4])}, ...) "
                             f"are not this data's ({', '.join(splits.class_names[:4])}, ...), "
                             f"in the same order")

    def rules(preprocessing):
        return None if preprocessing is None else preprocessing.to_json()

    if rules(teacher.preprocessing) != rules(splits.preprocessing):
        raise ModelFileError(f"{where} it makes the table's columns into inputs differently "
                             "(trained on other data, or another --seed, --val-fraction or "
                             "--test-fraction)")
    pixels = splits.pixels_train
    chunk = 8192  # rows per pass: the float inputs of a large set are not made all at once
    soft = np.empty((len(pixels), teacher.layout.sizes[-1]))
    for start in range(0, len(pixels), chunk):
        soft[start:start + chunk] = teacher.soft_targets(
            model_inputs(pixels[start:start + chunk], teacher.params.dtype), config.temperature)
    return soft, digest


def _train_one_epoch(epoch, states, layout, splits, members, shuffle_rngs, display,
                     soft_targets=None) -> dict:
    """Shuffle, run the compiled epoch of every member (under the display), validate the
    ensemble; the epoch's record. states, members, shuffle_rngs: each member's TrainState,
    settings (config.member(k)) and shuffle generator; one of each for a single network.
    soft_targets: the teacher's for the training rows (--teacher), or None. The training
    figures are the members' means, the seconds their sum."""
    config = members[0]
    total_batches = -(-len(splits.y_train) // config.batch_size)
    image_width = splits.image_shape[1] if splits.image_shape else 0  # --augment, --rotate ...

    orders = [rng.permutation(len(splits.y_train)) for rng in shuffle_rngs]

    def one_epoch(counters):
        start = time.perf_counter()
        results = []
        for k, (state, member, order) in enumerate(zip(states, members, orders)):
            counter = counters if len(states) == 1 else counters[k:k + 1]
            results.append(run_epoch(state, layout, splits.pixels_train, splits.y_train, order,
                                     config.batch_size, member, counter,
                                     image_width=image_width, weights=splits.w_train,
                                     soft_targets=soft_targets))
        return results, time.perf_counter() - start

    results, train_seconds = display.run(epoch, total_batches, one_epoch, parts=len(states))
    for (loss, _, batches), state in zip(results, states):
        if batches < total_batches or not np.isfinite(loss):
            raise DivergedError(f"training diverged in epoch {epoch} (loss became NaN or "
                                f"infinite after {state.step} steps): try a smaller learning "
                                "rate")
    if len(results) == 1:
        train_loss, train_accuracy, _ = results[0]
    else:
        train_loss = float(np.mean([loss for loss, _, _ in results]))
        train_accuracy = float(np.mean([accuracy for _, accuracy, _ in results]))
    state = states[0]  # the members step together: one step count, one learning rate
    val = score_params(stacked([member.params for member in states]), layout, splits.x_val,
                       splits.y_val, config, splits.w_val, splits.target_scaling)
    record = {"epoch": epoch, "train_loss": train_loss}
    if config.task != "regression":
        record["train_accuracy"] = train_accuracy
    record |= {f"val_{name}": val[name] for name in ("loss",) + TASK_METRICS[config.task]}
    return record | {"learning_rate": state.lr, "train_seconds": train_seconds}
