"""A training run: data, model, epochs, metrics, results on disk.

    train(config) -> RunResult(run_dir, summary)

Each epoch is ONE compiled call (kernels/epoch.py). On a terminal the call runs in a worker
thread (it holds no GIL) while the main thread draws a progress bar from its batch counter.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ACTIVATIONS, LOSSES, OPTIMIZERS, TrainConfig, code_of
from .errors import DivergedError, FastMLPError
from .files import make_unique_dir, write_json_atomic
from .model import Layout, init_params, save_model


@dataclass
class RunResult:
    run_dir: Path
    summary: dict


@dataclass
class TrainState:
    """Everything that changes during training: parameters, optimizer state, step count."""

    params: np.ndarray
    state1: np.ndarray
    state2: np.ndarray
    grads: np.ndarray
    step: int = 0

    @classmethod
    def fresh(cls, params: np.ndarray) -> "TrainState":
        return cls(params, np.zeros_like(params), np.zeros_like(params), np.zeros_like(params))


@contextlib.contextmanager
def thread_limits(threads):
    """Use `threads` Numba and BLAS threads inside the block (all cores when None)."""
    if threads is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)


def warm_up(dtype="float32") -> float:
    """Compile (or load from the on-disk cache) every training kernel; returns the seconds."""
    from .kernels.epoch import evaluate, train_epoch

    start = time.perf_counter()
    layout = Layout((4, 3, 2))
    params = init_params(layout, "Xavier", np.random.default_rng(0), np.dtype(dtype))
    state = TrainState.fresh(params)
    pixels = np.zeros((2, 4), dtype=np.uint8)
    labels = np.zeros(2, dtype=np.int64)
    run_epoch(state, layout, pixels, labels, np.arange(2), 2, 0, 1, 0, TrainConfig())
    evaluate(np.zeros(2, dtype=np.int64), pixels.astype(dtype), labels, params,
             np.array(layout.sizes, dtype=np.int64), layout.w_offsets, 0, 1)
    return time.perf_counter() - start


def run_epoch(state: TrainState, layout: Layout, pixels, labels, order, batch_size,
              act_code, loss_code, opt_code, config: TrainConfig, progress=None, shards=None):
    """One compiled epoch over pixels[order] (uint8 images, scaled to [0, 1] in the kernel);
    returns (mean batch loss, accuracy, batches run).

    shards: how many threads split each batch by rows (default: Numba's thread count). With
    more than one, BLAS runs single-threaded inside them: on these small matrices a thread
    per shard beats threading every GEMM."""
    import numba
    from threadpoolctl import threadpool_limits

    from .kernels.epoch import train_epoch

    shards = shards or numba.get_num_threads()

    if progress is None:
        progress = np.zeros(1, dtype=np.int64)
    batch_size = min(batch_size, len(order))  # the same batches; buffers no bigger than the data
    with threadpool_limits(limits=1 if shards > 1 else None, user_api="blas"):
        loss_sum, correct, batches, state.step = train_epoch(
            state.params, state.state1, state.state2, state.grads, progress, state.step,
            pixels, labels, order, batch_size, np.array(layout.sizes, dtype=np.int64),
            layout.w_offsets, layout.decay_segments(), act_code, loss_code, opt_code,
            config.learning_rate, config.momentum, config.beta, config.beta1, config.beta2,
            config.epsilon, config.weight_decay, shards)
    return loss_sum / max(batches, 1), correct / len(order), batches


def evaluate_params(params, layout: Layout, x, labels, activation: str, loss: str):
    """(mean loss, accuracy, predicted labels) of a parameter buffer on a whole set."""
    from .kernels.epoch import evaluate

    predictions = np.empty(len(labels), dtype=np.int64)
    mean_loss = evaluate(predictions, x, labels, params, np.array(layout.sizes, dtype=np.int64),
                         layout.w_offsets, code_of(activation, ACTIVATIONS), code_of(loss, LOSSES))
    return float(mean_loss), float((predictions == labels).mean()), predictions


def confusion_matrix(labels, predictions, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(
        classes, classes)


@dataclass
class Splits:
    pixels_train: np.ndarray  # uint8: the training kernel scales them as it gathers a batch
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple


def load_splits(config: TrainConfig) -> Splits:
    """The seeded validation split taken off train; validation and test as floats in [0, 1]."""
    from .data import load_dataset, scale_pixels, train_val_split

    dataset = load_dataset(config.dataset, config.data_dir)
    train_rows, val_rows = train_val_split(len(dataset.y_train), config.val_fraction, config.seed)
    dtype = np.dtype(config.dtype)
    labels = dataset.y_train.astype(np.int64)
    return Splits(
        pixels_train=dataset.x_train[train_rows], y_train=labels[train_rows],
        x_val=scale_pixels(dataset.x_train[val_rows], dtype), y_val=labels[val_rows],
        x_test=scale_pixels(dataset.x_test, dtype), y_test=dataset.y_test.astype(np.int64),
        class_names=tuple(dataset.class_names))


class EpochDisplay:
    """A live bar per epoch on a terminal; one plain line per epoch otherwise."""

    def __init__(self, enabled: bool, epochs: int, stream=None):
        self.stream = stream or sys.stderr
        self.live = enabled if enabled is not None else self.stream.isatty()
        self.epochs = epochs

    def run(self, epoch: int, total_batches: int, work):
        """Call work(progress_counter) and show its progress; returns what work returns."""
        counter = np.zeros(1, dtype=np.int64)
        if not self.live:
            return work(counter)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        outcome = {}

        def target():
            try:
                outcome["value"] = work(counter)
            except BaseException as exc:  # re-raised in the main thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, daemon=True)
        with Progress("[bold]epoch {task.fields[epoch]}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=True,
                      console=_console(self.stream)) as bar:
            task = bar.add_task("train", total=total_batches, epoch=f"{epoch}/{self.epochs}")
            worker.start()
            while worker.is_alive():
                worker.join(timeout=0.05)
                bar.update(task, completed=int(counter[0]))
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def epoch_line(self, record: dict) -> None:
        print(f"epoch {record['epoch']}/{self.epochs}  train loss {record['train_loss']:.4f}  "
              f"acc {record['train_accuracy']:.4f}  |  val loss {record['val_loss']:.4f}  "
              f"acc {record['val_accuracy']:.4f}  |  {record['train_seconds']:.2f} s",
              file=self.stream, flush=True)


def _console(stream):
    from rich.console import Console

    return Console(file=stream)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the run directory keeps the last completed epoch's checkpoint."""

    def __init__(self, run_dir):
        import shlex

        super().__init__(f"resume with  fastmlp train --resume {shlex.quote(str(run_dir))}")
        self.run_dir = Path(run_dir)


@contextlib.contextmanager
def _writing(path):
    """Turn an OSError while writing `path` into one plain line."""
    try:
        yield
    except OSError as exc:
        raise FastMLPError(f"cannot write {path}: {exc.strerror or exc}") from None


def _rewrite_metrics(path: Path, epochs: list) -> None:
    """metrics.jsonl holding exactly `epochs` (drops lines the checkpoint does not know)."""
    import json

    from .files import atomic_writer

    with _writing(path), atomic_writer(path, "w") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in epochs)


def train(config: TrainConfig | None, *, epoch_callback=None, progress=None, resume_dir=None,
          plots=True) -> RunResult:
    """Train one model as `config` says and write its results; see the module docstring.

    A checkpoint.npz is written into the run directory before the first epoch and after
    every epoch. resume_dir: continue that run from its checkpoint; `config` is then None
    (the saved configuration) or must equal the saved one except for the settings in
    checkpoint.RESUME_OVERRIDABLE. plots: draw the learning curves and the test confusion
    matrix into the run directory at the end (and log them to wandb).
    Ctrl-C raises TrainingInterrupted (a KeyboardInterrupt) naming the resume command.
    """
    import shutil

    from .checkpoint import checkpoint_path, load_resumable, resume_config, save_checkpoint
    from .tracking import MetricsFile, WandbRun, preload_wandb

    resumed = None
    if resume_dir is not None:
        resumed = load_resumable(resume_dir)
        config = resume_config(resumed.config, config.to_dict() if config is not None else {})
    config = config.validated()
    preload_wandb(config.wandb_mode)
    with thread_limits(config.threads):
        splits = load_splits(config)
        layout = Layout(config.layer_sizes)
        dtype = np.dtype(config.dtype)
        if resumed is None:
            state = TrainState.fresh(init_params(layout, config.weight_init,
                                                 np.random.default_rng([config.seed, 0]), dtype))
            shuffle_rng = np.random.default_rng([config.seed, 1])
            epochs = []
        else:
            state = TrainState(resumed.params, resumed.state1, resumed.state2,
                               np.zeros_like(resumed.params), resumed.step)
            shuffle_rng = resumed.shuffle_rng()
            epochs = list(resumed.epochs)
        compile_seconds = warm_up(config.dtype)

        if resumed is None:
            output_dir = Path(config.output_dir)
            try:
                run_dir = make_unique_dir(output_dir, config.run_name())
            except OSError as exc:
                raise FastMLPError(f"cannot create a run directory in {output_dir}: "
                                   f"{exc.strerror or exc}") from None
        else:
            run_dir = Path(resume_dir)
        metrics = MetricsFile(run_dir / "metrics.jsonl")
        display = EpochDisplay(progress, config.epochs)
        codes = (code_of(config.activation, ACTIVATIONS), code_of(config.loss, LOSSES),
                 code_of(config.optimizer, OPTIMIZERS))
        total_batches = -(-len(splits.y_train) // config.batch_size)
        wandb_run = None
        saved_epochs = len(epochs) if resumed is not None else -1  # in checkpoint.npz on disk

        def checkpoint():
            nonlocal saved_epochs
            save_checkpoint(run_dir, config, run_dir.name, layout.sizes, state, shuffle_rng, epochs)
            saved_epochs = len(epochs)

        try:
            if resumed is None:
                checkpoint()  # epoch 0: even a Ctrl-C in the first epoch is resumable
            else:
                _rewrite_metrics(metrics.path, epochs)
            wandb_run = WandbRun(config, run_dir.name, run_dir.parent)
            for record in epochs:  # a resumed run's wandb history starts at epoch 1 too
                wandb_run.log({k: v for k, v in record.items() if k != "train_seconds"})
            wandb_run.ready()  # started before the epochs: it would slow the first one down
            for epoch in range(len(epochs) + 1, config.epochs + 1):
                order = shuffle_rng.permutation(len(splits.y_train))

                def one_epoch(counter):
                    start = time.perf_counter()
                    result = run_epoch(state, layout, splits.pixels_train, splits.y_train, order,
                                       config.batch_size, *codes, config, counter)
                    return result, time.perf_counter() - start

                (train_loss, train_accuracy, batches), train_seconds = display.run(
                    epoch, total_batches, one_epoch)
                if batches < total_batches or not np.isfinite(train_loss):
                    raise DivergedError(
                        f"training diverged in epoch {epoch} (loss became NaN or infinite after "
                        f"{state.step} steps): try a smaller learning rate")
                val_loss, val_accuracy, _ = evaluate_params(
                    state.params, layout, splits.x_val, splits.y_val, config.activation, config.loss)
                record = {"epoch": epoch, "train_loss": train_loss,
                          "train_accuracy": train_accuracy, "val_loss": val_loss,
                          "val_accuracy": val_accuracy, "train_seconds": train_seconds}
                epochs.append(record)
                checkpoint()
                with _writing(metrics.path):
                    metrics.append(record)
                wandb_run.log({k: v for k, v in record.items() if k != "train_seconds"})
                display.epoch_line(record)
                if epoch_callback is not None:
                    epoch_callback(record)

            test_loss, test_accuracy, predictions = evaluate_params(
                state.params, layout, splits.x_test, splits.y_test, config.activation, config.loss)
            matrix = confusion_matrix(splits.y_test, predictions, len(splits.class_names))
            summary = {
                "run_name": run_dir.name, "config": config.to_dict(),
                "train_command": config.train_command(), "num_params": layout.num_params,
                "epochs": epochs, "compile_seconds": compile_seconds,
                "test_loss": test_loss, "test_accuracy": test_accuracy,
                "class_names": list(splits.class_names), "confusion_matrix": matrix.tolist()}
            images = {}
            if plots:  # at the end: pictures never slow the epochs down
                from .plots import run_plots

                images = run_plots(run_dir, epochs, matrix, splits.class_names, run_dir.name)
            with _writing(run_dir / "model.npz"):
                save_model(run_dir / "model.npz", layout, state.params, config.to_dict(),
                           splits.class_names)
            with _writing(run_dir / "summary.json"):  # written last: "this run is finished"
                write_json_atomic(run_dir / "summary.json", summary)
            checkpoint_path(run_dir).unlink(missing_ok=True)  # finished: nothing to resume
            wandb_run.log({"test_loss": test_loss, "test_accuracy": test_accuracy})
            wandb_run.log_confusion_matrix(splits.y_test, predictions, splits.class_names)
            wandb_run.log_images(images)
            wandb_run.summary({"test_loss": test_loss, "test_accuracy": test_accuracy})
            wandb_run.finish()
        except BaseException as exc:
            if wandb_run is not None:
                wandb_run.finish(exit_code=1)
            interrupted = isinstance(exc, KeyboardInterrupt) and saved_epochs >= 0
            if resumed is None and saved_epochs <= 0 and not interrupted:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping
            if interrupted:
                raise TrainingInterrupted(run_dir) from None
            raise
    return RunResult(run_dir, summary)
