"""What a run shows on the terminal while it trains: a live bar per epoch on a terminal, one
plain line per epoch otherwise."""
from __future__ import annotations

import sys
import threading

import numpy as np


class EpochDisplay:
    """A live bar per epoch on a terminal; one plain line per epoch otherwise."""

    def __init__(self, enabled: bool, epochs: int, stream=None):
        self.stream = stream or sys.stderr
        self.live = enabled if enabled is not None else self.stream.isatty()
        self.epochs = epochs

    def run(self, epoch: int, total_batches: int, work, parts: int = 1):
        """Call work(progress_counters) and show its progress; returns what work returns.
        parts: how many compiled epochs of total_batches each work runs (an ensemble's
        members), each counting its batches in its own element of the counters."""
        counter = np.zeros(parts, dtype=np.int64)
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
            task = bar.add_task("train", total=total_batches * parts,
                                epoch=f"{epoch}/{self.epochs}")
            worker.start()
            while worker.is_alive():
                worker.join(timeout=0.05)
                bar.update(task, completed=int(counter.sum()))
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def epoch_line(self, record: dict) -> None:
        """`epoch 3/10  train loss L  acc A  |  val loss L  acc A  |  S s`; the validation
        part lists the task's figures (rmse, mae, r2 for regression; acc, f1 multilabel)."""
        train = f"train loss {record['train_loss']:.4f}"
        if "train_accuracy" in record:
            train += f"  acc {record['train_accuracy']:.4f}"
        figures = "  ".join(f"{SHORT.get(name, name)} {value:.4f}"
                            for key, value in record.items() if key.startswith("val_")
                            for name in [key.removeprefix("val_")])
        print(f"epoch {record['epoch']}/{self.epochs}  {train}  |  val {figures}  |  "
              f"{record['train_seconds']:.2f} s", file=self.stream, flush=True)


SHORT = {"accuracy": "acc"}  # how the epoch line names a figure


def _console(stream):
    from rich.console import Console

    return Console(file=stream)
