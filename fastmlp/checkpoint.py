"""checkpoint.npz: everything a run needs to continue exactly where it stopped.

Written atomically into the run directory after every completed epoch (and once before the
first, so an early Ctrl-C is resumable too); removed when the run finishes. It holds the flat parameter buffer, both
optimizer-state buffers, the step counter, the shuffle generator's state, the per-epoch
records so far and the run's configuration. `fastmlp train --resume RUN_DIR` reads it and
finishes the run exactly as an uninterrupted run with the same seed would have.

The gradient buffer is not stored: every step overwrites it before it is read.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import ConfigError, FastMLPError

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_FORMAT_VERSION = 1

# Settings that may differ on resume: they change where or how a run is shown or computed
# on this machine, never its numbers.
RESUME_OVERRIDABLE = ("threads", "data_dir", "wandb_mode", "wandb_project", "wandb_entity")
# Settings a resumed run ignores: the run directory is already chosen.
RESUME_IGNORED = ("output_dir",)


class CheckpointError(FastMLPError):
    """A run directory has no usable checkpoint."""


@dataclass
class Checkpoint:
    config: TrainConfig
    run_name: str
    sizes: tuple
    params: np.ndarray
    state1: np.ndarray
    state2: np.ndarray
    step: int
    epochs: list  # per-epoch records, one per completed epoch
    rng_state: dict  # np.random.Generator.bit_generator.state of the shuffle generator

    @property
    def completed_epochs(self) -> int:
        return len(self.epochs)

    def shuffle_rng(self) -> np.random.Generator:
        """A generator in exactly the saved state."""
        name = self.rng_state.get("bit_generator")
        if name not in ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"):
            raise CheckpointError(f"unknown random generator {name!r} in the checkpoint")
        generator = np.random.Generator(getattr(np.random, name)())
        generator.bit_generator.state = self.rng_state
        return generator


def checkpoint_path(run_dir) -> Path:
    return Path(run_dir) / CHECKPOINT_NAME


def save_checkpoint(run_dir, config: TrainConfig, run_name: str, sizes, state, shuffle_rng,
                    epochs: list) -> Path:
    """Write run_dir/checkpoint.npz atomically (a failure leaves the previous one intact)."""
    from .files import atomic_writer

    path = checkpoint_path(run_dir)
    try:
        with atomic_writer(path, "wb") as handle:
            np.savez(handle,
                     checkpoint_format_version=np.int64(CHECKPOINT_FORMAT_VERSION),
                     config_json=np.str_(json.dumps(config.to_dict())),
                     run_name=np.str_(run_name),
                     sizes=np.array(sizes, dtype=np.int64),
                     params=state.params, state1=state.state1, state2=state.state2,
                     step=np.int64(state.step),
                     epochs_json=np.str_(json.dumps(epochs)),
                     rng_state_json=np.str_(json.dumps(shuffle_rng.bit_generator.state)))
    except OSError as exc:
        raise FastMLPError(f"cannot write {path}: {exc.strerror or exc}") from None
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
                rng_state=json.loads(str(data["rng_state_json"])))
    except FastMLPError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint "
                              f"({exc.__class__.__name__}: {exc})") from None
    _check_consistent(path, checkpoint)
    return checkpoint


def load_resumable(run_dir) -> Checkpoint:
    """The checkpoint of a run that has not finished yet (CheckpointError otherwise)."""
    if (Path(run_dir) / "summary.json").exists():
        raise CheckpointError(f"{run_dir}: this run has already finished (it has a "
                              "summary.json); start a new run instead")
    return load_checkpoint(run_dir)


def _check_consistent(path, checkpoint: Checkpoint) -> None:
    config = checkpoint.config
    expected_sizes = config.layer_sizes
    n = sum(a * b + b for a, b in zip(expected_sizes[:-1], expected_sizes[1:]))
    problems = []
    if checkpoint.sizes != expected_sizes:
        problems.append(f"architecture {checkpoint.sizes} does not match its configuration "
                        f"{expected_sizes}")
    for name in ("params", "state1", "state2"):
        buffer = getattr(checkpoint, name)
        if buffer.shape != (n,) or buffer.dtype != np.dtype(config.dtype):
            problems.append(f"{name} is {buffer.dtype}{list(buffer.shape)}, expected "
                            f"{config.dtype}[{n}]")
    if not isinstance(checkpoint.epochs, list) or len(checkpoint.epochs) > config.epochs:
        problems.append("its epoch records do not fit the configuration")
    if checkpoint.step < 0:
        problems.append(f"negative step counter {checkpoint.step}")
    if problems:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {problems[0]}")


def resume_config(saved: TrainConfig, overrides: dict) -> TrainConfig:
    """The saved configuration with the machine-local `overrides` applied.

    `overrides` maps field names to values (e.g. the flags typed with --resume). A setting
    outside RESUME_OVERRIDABLE that differs from the saved one is a ConfigError: a resumed
    run must compute exactly what the interrupted one would have.
    """
    from .config import flag_name

    values = {k: v for k, v in overrides.items() if k not in RESUME_IGNORED and k != "group"}
    candidate = dataclasses.replace(saved, **values).validated()
    for name in values:
        if name not in RESUME_OVERRIDABLE and getattr(candidate, name) != getattr(saved, name):
            raise ConfigError(f"{flag_name(name)}: a resumed run keeps the settings it started "
                              f"with ({getattr(saved, name)!r}); drop the flag, or start a new "
                              "run")
    return dataclasses.replace(candidate, group=saved.group if "group" not in overrides
                               else overrides["group"])
