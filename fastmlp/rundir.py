"""A run directory and every file in it, from creation to the finished run.

    <output_dir>/<run name>/
        checkpoint.npz          while the run is unfinished: everything needed to resume
        metrics.jsonl           one JSON line per finished epoch
        learning_curves.png     }  at the end, unless --no-plots
        confusion_matrix.png    }
        model.npz               the trained model (fastmlp/model.py's format)
        summary.json            written last: "this run is finished"

RunDirectory.create(config) makes a new one; RunDirectory.resume(path, overrides) opens an
unfinished one, reading its checkpoint once and applying the one resume rule
(config.resume_config). On a failure, `abandon` removes a directory that holds nothing worth
keeping.

checkpoint.npz is written atomically after every completed epoch (and once before the first,
so an early Ctrl-C is resumable too) and removed when the run finishes. It holds the flat
parameter buffer, both optimizer-state buffers, the step counter, the shuffle generator's
state, the per-epoch records so far and the run's configuration, so that `fastmlp train
--resume RUN_DIR` finishes the run exactly as an uninterrupted run with the same seed would
have (with --teacher, also the teacher file's SHA-256: a resumed run recomputes the soft
targets from the same file). The gradient buffer is not stored: every step overwrites it
before it is read. An ensemble (--ensemble K > 1) keeps each member's buffers as one row of
(K, P) arrays (the best epoch's parameters too) and a list of the members' shuffle-generator
states; a run of one network writes exactly the arrays it always did.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig, resume_config
from .errors import FastMLPError
from .files import atomic_writer, make_unique_dir, write_json_atomic, writing
from .model import Layout

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_FORMAT_VERSION = 2  # 2: the best epoch's parameters (for --keep best)
METRICS_NAME = "metrics.jsonl"
MODEL_NAME = "model.npz"
SUMMARY_NAME = "summary.json"


class CheckpointError(FastMLPError):
    """A run directory has no usable checkpoint."""


@dataclass
class Checkpoint:
    config: TrainConfig
    run_name: str
    sizes: tuple
    params: np.ndarray  # (P,), or (K, P) for an ensemble: a row per member (state1, state2)
    state1: np.ndarray
    state2: np.ndarray
    step: int
    epochs: list  # per-epoch records, one per completed epoch
    rng_state: dict | list  # the shuffle generator's bit_generator.state (a list: per member)
    best: "BestEpoch"  # the epoch of the best validation accuracy so far, and its parameters
    teacher_sha256: str = ""  # --teacher: its file's SHA-256 (a resumed run checks it)

    @property
    def completed_epochs(self) -> int:
        return len(self.epochs)

    def shuffle_rng(self) -> np.random.Generator:
        """A generator in exactly the saved state (member 0's, for an ensemble)."""
        return self.shuffle_rngs()[0]

    def shuffle_rngs(self) -> list:
        """Each member's generator in exactly its saved state (one for a single network)."""
        return [_generator(state) for state in
                (self.rng_state if isinstance(self.rng_state, list) else [self.rng_state])]


def _generator(state: dict) -> np.random.Generator:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"):
        raise CheckpointError(f"unknown random generator {name!r} in the checkpoint")
    generator = np.random.Generator(getattr(np.random, name)())
    generator.bit_generator.state = state
    return generator


def stacked(arrays: list) -> np.ndarray:
    """One network's buffer as it is, an ensemble's members' as the rows of a (K, P) array:
    how checkpoints and model files hold them."""
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


def checkpoint_path(run_dir) -> Path:
    return Path(run_dir) / CHECKPOINT_NAME


@dataclass
class BestEpoch:
    """The epoch with the best `monitor` figure so far (0: none yet: value None) and its
    parameters; the run's --monitor (val_accuracy, val_loss, val_rmse, ...) says which
    figure, metrics.higher_is_better which way is better."""

    epoch: int
    params: np.ndarray
    value: float | None = None
    monitor: str = "val_accuracy"

    def offer(self, record: dict, params: np.ndarray) -> bool:
        """Keep this epoch if it beats the best; True when it did."""
        from .metrics import higher_is_better

        value = record[self.monitor]
        better = self.value is None or (value > self.value if higher_is_better(self.monitor)
                                        else value < self.value)
        if better:
            self.epoch, self.value = record["epoch"], value
            self.params = params.copy()
        return better


def save_checkpoint(run_dir, config: TrainConfig, run_name: str, sizes, states: list,
                    shuffle_rngs: list, epochs: list, best: BestEpoch,
                    teacher_sha256: str = "") -> Path:
    """Write run_dir/checkpoint.npz atomically (a failure leaves the previous one intact).
    states, shuffle_rngs: the members' TrainStates and shuffle generators (one each for a
    single network); the members step together, so one step counter serves them all."""
    path = checkpoint_path(run_dir)
    rng_states = [rng.bit_generator.state for rng in shuffle_rngs]
    with writing(path):
        with atomic_writer(path, "wb") as handle:
            np.savez(handle,
                     checkpoint_format_version=np.int64(CHECKPOINT_FORMAT_VERSION),
                     config_json=np.str_(json.dumps(config.to_dict())),
                     run_name=np.str_(run_name),
                     sizes=np.array(sizes, dtype=np.int64),
                     params=stacked([state.params for state in states]),
                     state1=stacked([state.state1 for state in states]),
                     state2=stacked([state.state2 for state in states]),
                     step=np.int64(states[0].step),
                     epochs_json=np.str_(json.dumps(epochs)),
                     rng_state_json=np.str_(json.dumps(
                         rng_states[0] if len(rng_states) == 1 else rng_states)),
                     best_epoch=np.int64(best.epoch), best_params=best.params,
                     best_value=np.float64(np.nan if best.value is None else best.value),
                     teacher_sha256=np.str_(teacher_sha256))
    return path


def load_checkpoint(run_dir) -> Checkpoint:
    """Read run_dir/checkpoint.npz; CheckpointError (one plain line) if it is unusable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {CHECKPOINT_NAME} (not a fastmlp run directory, "
                              "or a run from before checkpoints)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "checkpoint_format_version" not in data.files:
                raise CheckpointError(f"{path}: not a fastmlp checkpoint")
            version = int(data["checkpoint_format_version"])
            if version != CHECKPOINT_FORMAT_VERSION:
                raise CheckpointError(f"{path}: checkpoint format version {version}, this "
                                      f"fastmlp reads version {CHECKPOINT_FORMAT_VERSION}")
            config = TrainConfig.from_dict(json.loads(str(data["config_json"]))).validated()
            checkpoint = Checkpoint(
                config=config, run_name=str(data["run_name"]),
                sizes=tuple(int(n) for n in data["sizes"]),
                params=np.array(data["params"]), state1=np.array(data["state1"]),
                state2=np.array(data["state2"]), step=int(data["step"]),
                epochs=json.loads(str(data["epochs_json"])),
                rng_state=json.loads(str(data["rng_state_json"])),
                best=BestEpoch(int(data["best_epoch"]), np.array(data["best_params"]),
                               _best_value(data), config.monitor),
                teacher_sha256=(str(data["teacher_sha256"]) if "teacher_sha256" in data.files
                                else ""))
    except FastMLPError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint "
                              f"({exc.__class__.__name__}: {exc})") from None
    _check_consistent(path, checkpoint)
    return checkpoint


def _best_value(data) -> float | None:
    """The best figure so far in a checkpoint (None before the first epoch); checkpoints of
    before --monitor hold it as best_val_accuracy, -1 for none."""
    if "best_value" in data.files:
        value = float(data["best_value"])
        return None if np.isnan(value) else value
    value = float(data["best_val_accuracy"])
    return None if value < 0 else value


def load_resumable(run_dir) -> Checkpoint:
    """The checkpoint of a run that has not finished yet (CheckpointError otherwise)."""
    if (Path(run_dir) / "summary.json").exists():
        raise CheckpointError(f"{run_dir}: this run has already finished (it has a "
                              "summary.json); start a new run instead")
    return load_checkpoint(run_dir)


def _check_consistent(path, checkpoint: Checkpoint) -> None:
    config = checkpoint.config
    expected_sizes = (config.layer_sizes if config.data is None  # own data: its own widths
                      else checkpoint.sizes[:1] + config.hidden_widths + checkpoint.sizes[-1:])
    n = Layout(tuple(expected_sizes), config.norm).num_params
    shape = (n,) if config.ensemble == 1 else (config.ensemble, n)
    problems = []
    if checkpoint.sizes != expected_sizes:
        problems.append(f"architecture {checkpoint.sizes} does not match its configuration "
                        f"{expected_sizes}")
    for name, buffer in (("params", checkpoint.params), ("state1", checkpoint.state1),
                         ("state2", checkpoint.state2), ("best_params", checkpoint.best.params)):
        if buffer.shape != shape or buffer.dtype != np.dtype(config.dtype):
            problems.append(f"{name} is {buffer.dtype}{list(buffer.shape)}, expected "
                            f"{config.dtype}{list(shape)}")
    members = len(checkpoint.rng_state) if isinstance(checkpoint.rng_state, list) else 1
    if members != config.ensemble:
        problems.append(f"{members} shuffle generators for {config.ensemble} members")
    if not isinstance(checkpoint.epochs, list) or len(checkpoint.epochs) > config.epochs:
        problems.append("its epoch records do not fit the configuration")
    if checkpoint.step < 0:
        problems.append(f"negative step counter {checkpoint.step}")
    if problems:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {problems[0]}")


# ----------------------------------------------------------------------------- the directory

class RunDirectory:
    """One run's directory: where its files go and when."""

    def __init__(self, path: Path, config: TrainConfig, checkpoint: Checkpoint | None = None):
        self.path = Path(path)
        self.config = config
        self.checkpoint = checkpoint  # what a resumed run starts from; None for a new run
        self.saved_epochs = len(checkpoint.epochs) if checkpoint else -1  # in checkpoint.npz
        self.teacher_sha256 = checkpoint.teacher_sha256 if checkpoint else ""  # --teacher's

    @classmethod
    def create(cls, config: TrainConfig) -> "RunDirectory":
        """A new directory named like the run under config.output_dir (name_2, ... if taken)."""
        output_dir = Path(config.output_dir)
        try:
            path = make_unique_dir(output_dir, config.run_name())
        except OSError as exc:
            raise FastMLPError(f"cannot create a run directory in {output_dir}: "
                               f"{exc.strerror or exc}") from None
        return cls(path, config)

    @classmethod
    def resume(cls, path, overrides: dict) -> "RunDirectory":
        """An unfinished run, its checkpoint read once; `overrides` (field -> value, e.g. the
        flags typed with --resume) follow config.resume_config's rule."""
        checkpoint = load_resumable(path)
        return cls(path, resume_config(checkpoint.config, overrides), checkpoint)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None

    def save_checkpoint(self, sizes, states: list, shuffle_rngs: list, epochs: list,
                        best: BestEpoch) -> None:
        save_checkpoint(self.path, self.config, self.name, sizes, states, shuffle_rngs, epochs,
                        best, self.teacher_sha256)
        self.saved_epochs = len(epochs)

    def append_metrics(self, record: dict) -> None:
        """One more line of metrics.jsonl, flushed as it is written."""
        path = self.path / METRICS_NAME
        with writing(path), open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def rewrite_metrics(self, epochs: list) -> None:
        """metrics.jsonl holding exactly `epochs` (drops lines the checkpoint does not know)."""
        path = self.path / METRICS_NAME
        with writing(path), atomic_writer(path, "w") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in epochs)

    def draw_pictures(self, epochs: list, matrix, class_names, regression=None) -> dict:
        """The end-of-run PNGs; returns {wandb key: path} (plots.run_plots)."""
        from .plots import run_plots

        return run_plots(self.path, epochs, matrix, class_names, self.name, regression)

    def finish(self, layout, params, class_names, summary: dict, target_scaling=None,
               preprocessing=None) -> None:
        """model.npz, then summary.json (written last: "this run is finished"), then the
        checkpoint goes: there is nothing left to resume. params: (P,), or an ensemble's
        (K, P). target_scaling: (mean, scale) of standardised regression targets, and
        preprocessing, a table's, kept in the model file."""
        from .model import save_model

        with writing(self.path / MODEL_NAME):
            save_model(self.path / MODEL_NAME, layout, params,  # + image_shape, if any
                       dict(self.config.to_dict(), **{key: summary[key] for key in
                                                      ("image_shape",) if key in summary}),
                       class_names, target_scaling, preprocessing)
        with writing(self.path / SUMMARY_NAME):
            write_json_atomic(self.path / SUMMARY_NAME, summary)
        checkpoint_path(self.path).unlink(missing_ok=True)

    def abandon(self, interrupted: bool) -> None:
        """After a failure: a new run that saved no finished epoch (and was not interrupted by
        the user, who is told how to resume) leaves nothing behind."""
        if not self.resumed and self.saved_epochs <= 0 and not interrupted:
            shutil.rmtree(self.path, ignore_errors=True)
