"""Sweep files: the wandb sweep YAML format, read, checked and turned into a search space.

A sweep file looks like wandb's (https://docs.wandb.ai/guides/sweeps/define-sweep-configuration):

    name: cs6910
    method: bayes                 # bayes | random | grid
    metric: {name: val_accuracy, goal: maximize}
    early_terminate: {type: hyperband, min_iter: 2, eta: 3}
    parameters:
      epochs: {values: [5, 10]}
      learning_rate: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}
      loss: {value: cross_entropy}

Parameter names are the `train` flags' long names (TrainConfig fields). Everything is checked
here, before any worker starts, so a bad file fails with one line and nothing is created.
This module imports no optuna or wandb at module level: `fastmlp train` starts fast.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from ..config import SETTING, SWEEPABLE, TrainConfig, parse_widths, widths_text
from ..errors import ConfigError, FastMLPError, first_line
from ..metrics import RECORDED, higher_is_better

METHODS = ("bayes", "random", "grid")
GOALS = ("maximize", "minimize")
# Metrics a trial reports after every epoch (the trainer's epoch record keys).
# every figure some task records per epoch (fastmlp/metrics.py); the data's task may narrow it
METRICS = tuple(dict.fromkeys(name for names in RECORDED.values() for name in names))
DISTRIBUTIONS = (
    "constant", "categorical", "uniform", "int_uniform",
    "log_uniform_values", "log_uniform", "q_uniform",
)
# The train settings a sweep may vary (SWEEPABLE) are marked in the settings table.
# Top-level keys of a wandb sweep file that fastmlp understands. `program`, `command` and
# `description` are accepted and ignored (fastmlp runs its own train function).
TOP_LEVEL_KEYS = (
    "name", "description", "method", "metric", "parameters", "early_terminate",
    "project", "entity", "run_cap", "program", "command",
)
PARAMETER_KEYS = ("distribution", "value", "values", "min", "max", "q")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_GRID_SIZE = 100_000

_DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class SweepParam:
    """One swept train setting, in wandb's terms with the distribution made explicit.

    `values` holds the choices of `categorical` and the single value of `constant`; the
    numeric distributions use `low`/`high` (wandb's min/max) and `q`.
    """

    name: str
    distribution: str
    values: tuple = ()
    low: Any = None
    high: Any = None
    q: Any = None

    @property
    def is_constant(self) -> bool:
        return self.distribution == "constant"

    @property
    def is_int(self) -> bool:
        """True when the train setting is a whole number."""
        return field_type(self.name) is int

    @property
    def draws_int(self) -> bool:
        """True when optuna draws whole numbers (int settings, and wandb's int_uniform)."""
        return self.is_int or self.distribution == "int_uniform"

    def suggest(self, trial):
        """Draw this parameter's value from an optuna trial."""
        if self.distribution in ("categorical", "constant"):
            return trial.suggest_categorical(self.name, list(self.values))
        low, high, log, step = self.optuna_range()
        if self.draws_int:
            return trial.suggest_int(self.name, low, high, log=log, step=step or 1)
        return trial.suggest_float(self.name, low, high, log=log, step=step)

    def optuna_range(self) -> tuple:
        """(low, high, log, step) of the optuna distribution for a numeric parameter."""
        if self.distribution == "log_uniform":  # wandb's min/max are natural-log exponents
            return math.exp(self.low), math.exp(self.high), True, None
        if self.distribution == "log_uniform_values":
            return self.low, self.high, True, None
        if self.distribution == "q_uniform":
            return self.low, self.high, False, self.q
        return self.low, self.high, False, None  # uniform, int_uniform

    def grid_values(self) -> list:
        """Every value this parameter can take, for grid search (discrete ones only)."""
        if self.distribution in ("categorical", "constant"):
            return list(self.values)
        if self.distribution == "int_uniform":
            return list(range(self.low, self.high + 1))
        if self.distribution == "q_uniform":
            steps = int(math.floor((self.high - self.low) / self.q + 1e-9))
            values = [self.low + i * self.q for i in range(steps + 1)]
            return [int(v) if self.draws_int else float(v) for v in values]
        raise ConfigError(
            f"grid search needs discrete values: parameter {self.name} has distribution "
            f"{self.distribution} (use values, int_uniform or q_uniform)")

    def to_wandb(self) -> dict:
        """This parameter in wandb's sweep-config form."""
        if self.distribution == "constant":
            return {"distribution": "constant", "value": self.values[0]}
        if self.distribution == "categorical":
            return {"distribution": "categorical", "values": list(self.values)}
        entry = {"distribution": self.distribution, "min": self.low, "max": self.high}
        if self.q is not None:
            entry["q"] = self.q
        return entry


@dataclass(frozen=True)
class Hyperband:
    """early_terminate: {type: hyperband} in optuna's HyperbandPruner terms (epochs)."""

    min_resource: int
    max_resource: int
    reduction_factor: int


@dataclass(frozen=True)
class SweepSpec:
    name: str
    method: str
    metric: str
    goal: str
    params: tuple            # SweepParam, in file order
    early_terminate: Optional[Hyperband]
    raw: dict                # the file's mapping as loaded (workers re-parse it)
    source: str              # where it came from, for messages
    project: Optional[str] = None
    entity: Optional[str] = None
    run_cap: Optional[int] = None

    @property
    def test_figure(self) -> str:
        """The test figure shown beside the metric (val_rmse: test_rmse), a trial attribute."""
        from ..metrics import test_figure_of

        return test_figure_of(self.metric)

    @property
    def direction(self) -> str:
        return self.goal  # optuna's direction names are wandb's goals

    @property
    def constants(self) -> dict:
        return {p.name: p.values[0] for p in self.params if p.is_constant}

    @property
    def searched(self) -> tuple:
        return tuple(p for p in self.params if not p.is_constant)

    def grid_space(self) -> dict:
        """name -> list of values over the searched parameters (optuna GridSampler)."""
        return {p.name: p.grid_values() for p in self.searched}

    @property
    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid_space().values())

    def default_count(self) -> Optional[int]:
        """Trials to run when --count is not given: run_cap, or the whole grid."""
        if self.run_cap is not None:
            return self.run_cap
        if self.method == "grid":
            return self.grid_size
        return None


# --------------------------------------------------------------------------- reading

def load_spec(path, name: Optional[str] = None) -> SweepSpec:
    """Read and check a sweep file; `name` (from --name) overrides the file's `name:`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FastMLPError(f"sweep file {path} not found")
    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(error, "problem", None) or first_line(error)
        raise ConfigError(f"{path}: not valid YAML{line}: {problem}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FastMLPError(f"cannot read sweep file {path}: {error}") from None
    return parse_spec(mapping, source=str(path), name=name or None,
                      default_name=path.stem)


def parse_spec(mapping, source: str = "sweep", name: Optional[str] = None,
               default_name: str = "sweep") -> SweepSpec:
    """Check a loaded sweep mapping and build the SweepSpec."""
    if not isinstance(mapping, dict):
        kind = "empty" if mapping is None else f"a {type(mapping).__name__}"
        raise ConfigError(f"{source}: a sweep file must be a YAML mapping, not {kind}")
    _refuse_unknown(mapping, TOP_LEVEL_KEYS, f"{source}: sweep setting")

    sweep_name = str(name or mapping.get("name") or default_name)
    if not NAME_PATTERN.match(sweep_name):
        raise ConfigError(
            f"{source}: sweep name {sweep_name!r} must use only letters, digits, '.', '_' "
            "and '-' (it names a directory and a study); give another with --name")

    method = mapping.get("method", "bayes")
    if method not in METHODS:
        raise ConfigError(f"{source}: method {method!r} is not supported "
                          f"(supported: {', '.join(METHODS)})")
    metric, goal = _parse_metric(mapping.get("metric"), source)

    parameters = mapping.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"{source}: 'parameters' must be a non-empty mapping of train flags")
    params = tuple(_parse_param(param_name, entry, source)
                   for param_name, entry in parameters.items())

    spec = SweepSpec(
        name=sweep_name, method=method, metric=metric, goal=goal, params=params,
        early_terminate=None, raw=mapping, source=source,
        project=_optional_str(mapping, "project", source),
        entity=_optional_str(mapping, "entity", source),
        run_cap=_optional_count(mapping, "run_cap", source),
    )
    if mapping.get("early_terminate") is not None:
        spec = replace(spec, early_terminate=_parse_hyperband(
            mapping["early_terminate"], _max_epochs(spec), source))
    if method == "grid":
        try:
            size = spec.grid_size
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        if size > MAX_GRID_SIZE:
            raise ConfigError(f"{source}: the grid has {size} points (more than "
                              f"{MAX_GRID_SIZE}); use method random or bayes")
    return spec


def _parse_metric(metric, source: str) -> tuple:
    """metric: {name, goal}; defaults to maximizing val_accuracy when absent."""
    if metric is None:
        return "val_accuracy", "maximize"
    if not isinstance(metric, dict):
        raise ConfigError(f"{source}: 'metric' must be a mapping with name and goal")
    _refuse_unknown(metric, ("name", "goal"), f"{source}: metric setting")
    name = metric.get("name", "val_accuracy")
    if name not in METRICS:
        raise ConfigError(f"{source}: metric {name!r} is not reported by train "
                          f"(use one of: {', '.join(METRICS)})")
    default_goal = "maximize" if higher_is_better(name) else "minimize"
    goal = metric.get("goal", default_goal)
    if goal not in GOALS:
        raise ConfigError(f"{source}: metric goal {goal!r} must be maximize or minimize")
    return name, goal


def _parse_param(name, entry, source: str) -> SweepParam:
    where = f"{source}: parameter {name}"
    if name not in SWEEPABLE:
        raise ConfigError(f"{source}: unknown parameter {name!r}: sweep parameters are the "
                          f"train flags' long names ({', '.join(SWEEPABLE)})")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{values: [...]}} or "
                          f"{{value: ...}}, got {entry!r}")
    _refuse_unknown(entry, PARAMETER_KEYS, f"{where}: setting")

    distribution = entry.get("distribution") or _infer_distribution(entry, where)
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: distribution {distribution!r} is not supported "
                          f"(supported: {', '.join(DISTRIBUTIONS)})")
    if distribution == "constant":
        _require(entry, ("value",), where, distribution)
        return SweepParam(name, "constant", values=(checked_value(name, entry["value"], where),))
    if distribution == "categorical":
        _require(entry, ("values",), where, distribution)
        values = entry["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: 'values' must be a non-empty list")
        checked = tuple(checked_value(name, value, where) for value in values)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"{where}: 'values' lists a value twice")
        return SweepParam(name, "categorical", values=checked)
    return _parse_range(name, entry, distribution, where)


def _infer_distribution(entry: dict, where: str) -> str:
    """wandb's rule: value -> constant, values -> categorical, int min/max -> int_uniform."""
    if "value" in entry:
        return "constant"
    if "values" in entry:
        return "categorical"
    if "min" in entry and "max" in entry:
        both_int = all(_is_whole(_number(entry[key], where)) and not _is_float_text(entry[key])
                       for key in ("min", "max"))
        return "int_uniform" if both_int else "uniform"
    raise ConfigError(f"{where}: give value, values, or min and max")


def _parse_range(name: str, entry: dict, distribution: str, where: str) -> SweepParam:
    """uniform / int_uniform / log_uniform_values / log_uniform / q_uniform."""
    needed = ("min", "max", "q") if distribution == "q_uniform" else ("min", "max")
    _require(entry, needed, where, distribution)
    low, high = _number(entry["min"], where), _number(entry["max"], where)
    if low > high:
        raise ConfigError(f"{where}: min {low} is greater than max {high}")
    q = _number(entry["q"], where) if "q" in entry else None
    if q is not None and (distribution != "q_uniform" or q <= 0):
        raise ConfigError(f"{where}: q must be > 0 and only goes with q_uniform")

    kind = field_type(name)
    if kind is str:
        raise ConfigError(f"{where}: {name} is a choice; use values: [...] "
                          f"(distribution {distribution} is numeric)")
    if distribution == "int_uniform" or kind is int:
        if distribution in ("uniform", "log_uniform"):
            raise ConfigError(f"{where}: {name} is a whole number; use int_uniform, "
                              f"q_uniform, log_uniform_values or values (not {distribution})")
        ends = (low, high) + ((q,) if q is not None else ())
        if not all(_is_whole(value) for value in ends):
            raise ConfigError(f"{where}: min, max and q must be whole numbers for "
                              f"{distribution} on {name}")
        low, high = int(low), int(high)
        q = int(q) if q is not None else None
    else:
        low, high = float(low), float(high)
        q = float(q) if q is not None else None
    if distribution == "log_uniform_values" and low <= 0:
        raise ConfigError(f"{where}: log_uniform_values needs min > 0 (got {low})")

    param = SweepParam(name, distribution, low=low, high=high, q=q)
    # Check the ends of the range against the train setting's own limits (e.g. lr > 0).
    range_low, range_high, _, _ = param.optuna_range()
    for end in (range_low, range_high):
        checked_value(name, int(end) if param.draws_int else float(end), where)
    return param


def _parse_hyperband(entry, max_epochs: int, source: str) -> Hyperband:
    """early_terminate: {type: hyperband, min_iter | max_iter+s, eta} -> pruner settings.

    wandb's brackets sit at min_iter * eta^k, or at max_iter / eta^k for k = 1..s; optuna's
    HyperbandPruner takes the smallest and largest resource (epochs) and eta.
    """
    where = f"{source}: early_terminate"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping such as {{type: hyperband, min_iter: 2}}")
    if entry.get("type") != "hyperband":
        raise ConfigError(f"{where}: type {entry.get('type')!r} is not supported "
                          "(supported: hyperband)")
    _refuse_unknown(entry, HYPERBAND_KEYS, f"{where}: setting")
    values = {}
    for key in ("min_iter", "max_iter", "s", "eta"):
        if key in entry:
            value = entry[key]
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"{where}: {key} must be a whole number >= 1, got {value!r}")
            values[key] = value
    eta = values.get("eta", 3)
    if eta < 2:
        raise ConfigError(f"{where}: eta must be >= 2")
    max_resource = values.get("max_iter", max_epochs)
    if "min_iter" in values:
        min_resource = values["min_iter"]
    elif "max_iter" in values and "s" in values:
        min_resource = max(1, values["max_iter"] // eta ** values["s"])
    else:
        raise ConfigError(f"{where}: give min_iter, or max_iter and s")
    if min_resource > max_resource:
        raise ConfigError(f"{where}: min_iter {min_resource} is more than the most epochs "
                          f"a trial runs ({max_resource})")
    return Hyperband(min_resource, max_resource, eta)


# --------------------------------------------------------------------------- helpers

def _max_epochs(spec: SweepSpec) -> int:
    """The most epochs any trial of the sweep can run (hyperband's max resource)."""
    for param in spec.params:
        if param.name == "epochs":
            if param.distribution in ("categorical", "constant"):
                return max(param.values)
            return int(param.optuna_range()[1])
    return _DEFAULTS.epochs


def field_type(name: str) -> type:
    """int, float or str: the type of a train setting, from the settings table."""
    return SETTING[name].kind


def checked_value(name: str, value, where: str):
    """Coerce a YAML value to the train setting's type and check it like `train` would.

    Returns the canonical value (choices in the spec's spelling: relu -> ReLU). YAML 1.1
    reads `1e-3` (no dot) as a string, so numeric strings are accepted for numbers.
    """
    kind = field_type(name)
    if SETTING[name].many and value is not None and not isinstance(value, (dict, bool)):
        return _checked_widths(name, value, where)
    if isinstance(value, (dict, list)) or value is None:
        raise ConfigError(f"{where}: {value!r} is not a single value")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not true or false")
        coerced = value
    elif kind is str:
        if isinstance(value, (bool, int, float)):
            raise ConfigError(f"{where}: {value!r} is not a valid {name}")
        coerced = str(value)
    else:
        number = _number(value, where)
        if kind is int:
            if not _is_whole(number):
                raise ConfigError(f"{where}: {value!r} is not a whole number")
            coerced = int(number)
        else:
            coerced = float(number)
    try:
        checked = TrainConfig(**{name: coerced}).validated()
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return getattr(checked, name)


def _checked_widths(name: str, value, where: str) -> str:
    """A many-valued setting (hidden_size: 64, [512, 256] or "512 256"), checked like
    `train` would; one width stays a number, several are kept as text ("512 256") so that
    Optuna can offer them as a choice."""
    try:
        widths = parse_widths(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a width or a list of widths") from None
    layers = len(widths) if isinstance(widths, tuple) else 1
    try:
        TrainConfig(**{name: widths, "num_layers": layers}).validated()
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return widths_text(widths) if isinstance(widths, tuple) else widths


def _number(value, where: str):
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if isinstance(value, (int, float)):
        number = value
    else:
        try:
            number = float(str(value))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return number


def _is_whole(number) -> bool:
    return float(number).is_integer()


def _is_float_text(value) -> bool:
    """True for YAML floats written like 1.0 or '1e-3': wandb infers `uniform` for them."""
    return isinstance(value, float) or (isinstance(value, str) and not value.strip().isdigit())


def _refuse_unknown(mapping: dict, known: tuple, what: str) -> None:
    for key in mapping:
        if key not in known:
            raise ConfigError(f"{what} {key!r} is not supported (supported: {', '.join(known)})")


def _require(entry: dict, keys: tuple, where: str, distribution: str) -> None:
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ConfigError(f"{where}: distribution {distribution} needs {' and '.join(missing)}")


def _optional_str(mapping: dict, key: str, source: str) -> Optional[str]:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be a string")
    return value


def _optional_count(mapping: dict, key: str, source: str) -> Optional[int]:
    value = mapping.get(key)
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                  and value >= 1):
        raise ConfigError(f"{source}: {key} must be a whole number >= 1")
    return value
