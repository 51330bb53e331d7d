"""TrainConfig: every `train` flag, its checks, and the name -> code registries.

The registries are the one place a choice is spelled: the CLI's choices, the kernels'
integer codes and the run name all come from here.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass, field
from typing import Optional

from .errors import ConfigError

# name -> integer code passed to the Numba kernels (the order is the code).
OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")
ACTIVATIONS = ("identity", "sigmoid", "tanh", "ReLU")
LOSSES = ("mean_squared_error", "cross_entropy")
WEIGHT_INITS = ("random", "Xavier", "He")
DATASETS = ("mnist", "fashion_mnist")
DTYPES = ("float32", "float64")
WANDB_MODES = ("offline", "online", "disabled")


def code_of(name: str, registry: tuple) -> int:
    """Integer code of a canonical choice name (its index in the registry)."""
    return registry.index(name)


def canonical_choice(value: str, registry: tuple, flag: str) -> str:
    """Match `value` case-insensitively against a registry; return the registry's spelling."""
    for name in registry:
        if str(value).lower() == name.lower():
            return name
    raise ConfigError(f"{flag}: {value!r} is not one of {', '.join(registry)}")


# (field, short flag, long flag) for the spec's flags; used for errors and for commands.
SPEC_FLAGS = (
    ("wandb_project", "-wp", "--wandb_project"),
    ("wandb_entity", "-we", "--wandb_entity"),
    ("dataset", "-d", "--dataset"),
    ("epochs", "-e", "--epochs"),
    ("batch_size", "-b", "--batch_size"),
    ("loss", "-l", "--loss"),
    ("optimizer", "-o", "--optimizer"),
    ("learning_rate", "-lr", "--learning_rate"),
    ("momentum", "-m", "--momentum"),
    ("beta", "-beta", "--beta"),
    ("beta1", "-beta1", "--beta1"),
    ("beta2", "-beta2", "--beta2"),
    ("epsilon", "-eps", "--epsilon"),
    ("weight_decay", "-w_d", "--weight_decay"),
    ("weight_init", "-w_i", "--weight_init"),
    ("num_layers", "-nhl", "--num_layers"),
    ("hidden_size", "-sz", "--hidden_size"),
    ("activation", "-a", "--activation"),
)
# Extra flags (not in the assignment's table), as field -> long flag.
EXTRA_FLAGS = {
    "seed": "--seed",
    "val_fraction": "--val-fraction",
    "dtype": "--dtype",
    "threads": "--threads",
    "output_dir": "--output-dir",
    "wandb_mode": "--wandb-mode",
    "data_dir": "--data-dir",
}
_CHOICES = {
    "dataset": DATASETS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "weight_init": WEIGHT_INITS,
    "activation": ACTIVATIONS,
    "dtype": DTYPES,
    "wandb_mode": WANDB_MODES,
}


def flag_name(field_name: str) -> str:
    """The flag a user typed for a field, for error messages ("-b/--batch_size")."""
    for name, short, long in SPEC_FLAGS:
        if name == field_name:
            return f"{short}/{long}"
    return EXTRA_FLAGS.get(field_name, field_name)


@dataclass
class TrainConfig:
    """One training run. Defaults: the seed README's example configuration."""

    wandb_project: str = "myprojectname"
    wandb_entity: str = "myname"
    dataset: str = "fashion_mnist"
    epochs: int = 10
    batch_size: int = 32
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    beta: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0005
    weight_init: str = "Xavier"
    num_layers: int = 3
    hidden_size: int = 64
    activation: str = "ReLU"
    # extras
    seed: int = 42
    val_fraction: float = 0.1
    dtype: str = "float32"
    threads: Optional[int] = None
    output_dir: str = "runs"
    wandb_mode: str = "offline"
    data_dir: Optional[str] = None
    # set by sweeps: wandb group and a run-name prefix
    group: Optional[str] = field(default=None, repr=False)

    def validated(self) -> "TrainConfig":
        """Return a copy with canonical choice spellings; raise ConfigError on a bad value."""
        values = dataclasses.asdict(self)
        for name, registry in _CHOICES.items():
            values[name] = canonical_choice(values[name], registry, flag_name(name))

        def check(name, ok, what):
            if not ok:
                raise ConfigError(f"{flag_name(name)}: {values[name]!r} {what}")

        def finite(name):
            value = values[name]
            return isinstance(value, (int, float)) and math.isfinite(value)

        for name in ("epochs", "batch_size", "hidden_size"):
            check(name, _is_int(values[name]) and values[name] >= 1, "must be a whole number >= 1")
        check("num_layers", _is_int(values["num_layers"]) and values["num_layers"] >= 0,
              "must be a whole number >= 0")
        check("learning_rate", finite("learning_rate") and values["learning_rate"] > 0,
              "must be a finite number > 0")
        check("epsilon", finite("epsilon") and values["epsilon"] > 0, "must be a finite number > 0")
        check("weight_decay", finite("weight_decay") and values["weight_decay"] >= 0,
              "must be a finite number >= 0")
        for name in ("momentum", "beta", "beta1", "beta2"):
            check(name, finite(name) and 0 <= values[name] < 1, "must be in [0, 1)")
        check("val_fraction", finite("val_fraction") and 0 < values["val_fraction"] < 1,
              "must be in (0, 1)")
        check("seed", _is_int(values["seed"]) and 0 <= values["seed"] < 2**32,
              "must be a whole number in [0, 2**32)")
        if values["threads"] is not None:
            check("threads", _is_int(values["threads"]) and values["threads"] >= 1,
                  "must be a whole number >= 1")
        return TrainConfig(**values)

    @property
    def layer_sizes(self) -> tuple:
        """Units per layer, input to output: 784, hidden_size x num_layers, 10."""
        return (784,) + (self.hidden_size,) * self.num_layers + (10,)

    def run_name(self) -> str:
        """The assignment's run-name style, e.g. hl_3_bs_32_ac_ReLU."""
        return f"hl_{self.num_layers}_bs_{self.batch_size}_ac_{self.activation}"

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values.pop("group")
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**values)

    def train_command(self) -> str:
        """The `fastmlp train ...` command line that reproduces this configuration."""
        parts = ["fastmlp", "train"]
        for name, short, _long in SPEC_FLAGS:
            parts += [short, str(getattr(self, name))]
        for name in ("seed", "dtype"):
            parts += [EXTRA_FLAGS[name], str(getattr(self, name))]
        if self.threads is not None:
            parts += ["--threads", str(self.threads)]
        return shlex.join(parts)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
