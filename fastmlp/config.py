"""The settings table: every `train` setting, declared once, as a field of TrainConfig.

Each field carries, beside its type and default, its flags, its help text, its choices or
rule, whether a sweep may vary it and what a resumed run does with it. Everything else is
made from this table: the click options of every command (cli.py), validation, the run
name, `train_command`, the sweep's parameter names, resume's override rule and the README's
flag table (`settings_table_markdown`; a test keeps the README in step). Adding a setting
is one entry here plus the code that uses it (docs/ARCHITECTURE.md).

The choice names live beside the code that gives them meaning: the kernels' in
kernels/interface.py, the weight inits in model.py, the datasets in data.py. The kernels
read a TrainConfig only once validated (`validated()`, interface.kernel_inputs).
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass, field
from typing import Callable, Optional

from .data import DATASETS, REGISTRY as DATASET_REGISTRY
from .errors import ConfigError
from .metrics import AUTO_MONITOR, DEFAULT_MONITOR, MONITORS, monitors_of
from .kernels.interface import (ACTIVATIONS, DEFORMATIONS, LEAKY_SLOPE, LOSS_TASK, LOSSES,
                                NORMS, OPTIMIZERS, SCHEDULES, TASK_LOSSES, TASKS)
from .model import WEIGHT_INITS

DTYPES = ("float32", "float64")
AUTO_TASK = "auto"
WANDB_MODES = ("offline", "online", "disabled")
KEEP = ("best", "last")
NO_AUGMENTATION = "none"


def code_of(name: str, registry: tuple) -> int:
    """Integer code of a canonical choice name (its index in the registry)."""
    return registry.index(name)


def canonical_choice(value: str, registry: tuple, flag: str, setting: str = None) -> str:
    """Match `value` case-insensitively against a registry; return the registry's spelling."""
    for name in registry:
        if str(value).lower() == name.lower():
            return name
    raise ConfigError(f"{flag}: {value!r} is not one of {', '.join(registry)}", setting=setting)


# ----------------------------------------------------------------------------- rules

@dataclass(frozen=True)
class Rule:
    """A check of a setting's value and the words an error (and the README) uses for it."""

    ok: Callable[[object], bool]
    text: str  # "must be ...": the error reads "<flag>: <value> <text>"
    short: str  # for the README table: "whole number >= 1"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(at_least: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= at_least, f"must be a whole number >= {at_least}",
                f"whole number >= {at_least}")


def positive() -> Rule:
    return Rule(lambda v: _is_finite(v) and v > 0, "must be a finite number > 0", "finite, > 0")


def non_negative() -> Rule:
    return Rule(lambda v: _is_finite(v) and v >= 0, "must be a finite number >= 0",
                "finite, >= 0")


def fraction(include_zero: bool) -> Rule:
    """[0, 1) or (0, 1)."""
    interval = "[0, 1)" if include_zero else "(0, 1)"
    low_ok = (lambda v: v >= 0) if include_zero else (lambda v: v > 0)
    return Rule(lambda v: _is_finite(v) and low_ok(v) and v < 1, f"must be in {interval}",
                interval)


def unit_interval() -> Rule:
    """[0, 1], both ends included."""
    return Rule(lambda v: _is_finite(v) and 0 <= v <= 1, "must be in [0, 1]", "[0, 1]")


def _is_widths(value) -> bool:
    if isinstance(value, (tuple, list)):
        return len(value) >= 1 and all(_is_int(v) and v >= 1 for v in value)
    return _is_int(value) and value >= 1


def parse_widths(value):
    """Widths as typed: 64, "64", "512 256 128", "512,256,128" or [512, 256, 128] -> an int
    (one width for all layers) or a tuple (one each); ValueError if they are not whole
    numbers."""
    if isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, str):
        parts = value.replace(",", " ").split()
    else:
        parts = [value]
    widths = []
    for part in parts:
        if isinstance(part, bool) or (isinstance(part, float) and not part.is_integer()):
            raise ValueError(part)
        widths.append(int(part))
    if not widths:
        raise ValueError(value)
    return widths[0] if len(widths) == 1 else tuple(widths)


def widths_text(widths) -> str:
    """The widths as a sweep records them: "64" or "512 256 128" (a scalar Optuna can hold)."""
    return " ".join(map(str, widths)) if isinstance(widths, (tuple, list)) else str(widths)


def _is_names(value) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) >= 1
            and all(isinstance(v, str) and v.strip() for v in value))


DELIMITER_RULE = Rule(lambda v: isinstance(v, str) and len(v) == 1 and v not in '"\n\r',
                      "must be one character (e.g. ';' or a tab)", "one character")
NAMES_RULE = Rule(_is_names, "must be one or more column names", "one or more column names")

WIDTHS_RULE = Rule(_is_widths, "must be whole numbers >= 1 (one per hidden layer, or one for all)",
                   "whole numbers >= 1: one for every hidden layer, or one each")

def augment_parts(text) -> tuple:
    """(shift pixels, flip) of an --augment value: `none`, or a comma list of `shift:N` and
    `flip` (e.g. `shift:2,flip`); ValueError if it is neither."""
    shift, flip = 0, False
    if str(text).strip().lower() == NO_AUGMENTATION:
        return shift, flip
    for part in str(text).lower().replace(" ", "").split(","):
        name, _, amount = part.partition(":")
        if name == "flip" and not amount and not flip:
            flip = True
        elif name == "shift" and amount.isdigit() and int(amount) >= 1 and not shift:
            shift = int(amount)
        else:
            raise ValueError(part)
    return shift, flip


def _is_augment(value) -> bool:
    try:
        augment_parts(value)
    except ValueError:
        return False
    return isinstance(value, str)


AUGMENT_RULE = Rule(_is_augment, "must be none, or shift:N (N >= 1 pixels) and/or flip, "
                                 "comma-separated (e.g. shift:2,flip)",
                    "`none`, `shift:N`, `flip`, `shift:N,flip`")

def degrees(below: float, inclusive: bool) -> Rule:
    """An angle in degrees: [0, below] or [0, below)."""
    interval = f"[0, {below:g}{']' if inclusive else ')'}"
    return Rule(lambda v: _is_finite(v) and 0 <= v and (v <= below if inclusive else v < below),
                f"must be a finite number of degrees in {interval}", f"degrees in {interval}")


SEED_RULE = Rule(lambda v: _is_int(v) and 0 <= v < 2**32, "must be a whole number in [0, 2**32)",
                 "whole number in [0, 2**32)")

# ----------------------------------------------------------------------------- the table

# What a resumed run does with a setting typed again on its command line.
FIXED = "fixed"          # must equal the saved value: it changes the run's numbers
MAY_CHANGE = "may change"  # machine-local: where or how the run is shown or computed
IGNORED = "ignored"      # the run directory is already chosen


def setting(default, long: str, short: Optional[str] = None, *, help: str, kind: type = None,
            choices: tuple = None, rule: Rule = None, sweep: bool = True, resume: str = FIXED,
            in_command: bool = True, shown_default: str = None, many: bool = False):
    """One row of the settings table, as a dataclass field.

    kind: int, float or str (default: the default value's type); choices: the canonical
    names (matched case-insensitively); rule: the check of other values; sweep: a sweep
    file may vary it; resume: FIXED, MAY_CHANGE or IGNORED; in_command: part of the
    `fastmlp train` command that reproduces a run (the extras only when they differ from
    their default); shown_default: how the README shows a
    None default; many: the flag takes one or more values (`-sz 512 256 128`)."""
    meta = dict(long=long, short=short, help=help, kind=kind or type(default), choices=choices,
                rule=rule, sweep=sweep, resume=resume, in_command=in_command,
                shown_default=shown_default, many=many)
    return field(default=default, metadata={"setting": meta})


@dataclass
class TrainConfig:
    """One training run. Defaults: the assignment's example configuration."""

    # -- the assignment's flags, in its order
    wandb_project: str = setting("myprojectname", "--wandb_project", "-wp", sweep=False,
                                 resume=MAY_CHANGE,
                                 help="wandb project the run is logged to.")
    wandb_entity: str = setting("myname", "--wandb_entity", "-we", sweep=False,
                                resume=MAY_CHANGE,
                                help="wandb entity (user or team).")
    dataset: str = setting("fashion_mnist", "--dataset", "-d", choices=DATASETS,
                           help="Dataset to train and test on.")
    epochs: int = setting(10, "--epochs", "-e", rule=whole(1),
                          help="Passes over the training set.")
    batch_size: int = setting(32, "--batch_size", "-b", rule=whole(1),
                              help="Training examples per optimizer step.")
    loss: Optional[str] = setting(None, "--loss", "-l", kind=str, choices=LOSSES,
                                  shown_default="by task",
                                  help="Loss: cross_entropy (the default) or mean_squared_error "
                                       "on a softmax over classes; squared_error (the "
                                       "default), absolute_error, huber or poisson for "
                                       "regression; binary_cross_entropy for multilabel.")
    optimizer: str = setting("adam", "--optimizer", "-o", choices=OPTIMIZERS,
                             help="Update rule.")
    learning_rate: float = setting(1e-3, "--learning_rate", "-lr", rule=positive(),
                                   help="Learning rate of every optimizer.")
    momentum: float = setting(0.9, "--momentum", "-m", rule=fraction(True),
                              help="Momentum of `momentum` and `nag`.")
    beta: float = setting(0.9, "--beta", "-beta", rule=fraction(True),
                          help="Decay of the squared-gradient average in `rmsprop`.")
    beta1: float = setting(0.9, "--beta1", "-beta1", rule=fraction(True),
                           help="First-moment decay of `adam` and `nadam`.")
    beta2: float = setting(0.999, "--beta2", "-beta2", rule=fraction(True),
                           help="Second-moment decay of `adam` and `nadam`.")
    epsilon: float = setting(1e-8, "--epsilon", "-eps", rule=positive(),
                             help="Epsilon in the denominators of `rmsprop`, `adam`, `nadam`.")
    weight_decay: float = setting(0.0005, "--weight_decay", "-w_d", rule=non_negative(),
                                  help="L2 weight decay on the weights (not the biases).")
    weight_init: str = setting("Xavier", "--weight_init", "-w_i", choices=WEIGHT_INITS,
                               help="Weight initialisation: random N(0, 0.1^2), Xavier "
                                    "(Glorot uniform) or He (normal); biases start at 0.")
    num_layers: int = setting(3, "--num_layers", "-nhl", rule=whole(0),
                              help="Number of hidden layers.")
    hidden_size: int | tuple = setting(64, "--hidden_size", "-sz", rule=WIDTHS_RULE, many=True,
                                       help="Units in every hidden layer, or one width per "
                                            "hidden layer (`-sz 512 256 128`; then -nhl may "
                                            "be left out).")
    activation: str = setting("ReLU", "--activation", "-a", choices=ACTIVATIONS,
                              help="Activation of the hidden layers (GELU: the exact erf "
                                   "form; SiLU: z * sigmoid(z)).")
    # -- fastmlp's extras
    leaky_slope: float = setting(LEAKY_SLOPE, "--leaky-slope", rule=fraction(True),
                                 help="LeakyReLU's slope for negative inputs (the other "
                                      "activations ignore it).")
    seed: int = setting(42, "--seed", rule=SEED_RULE,
                        help="Seed of the initialisation, the shuffling and the validation split.")
    val_fraction: float = setting(0.1, "--val-fraction", rule=fraction(False),
                                  help="Share of the training set held out for validation.")
    dtype: str = setting("float32", "--dtype", choices=DTYPES,
                         help="Floating-point precision of the whole computation.")
    threads: Optional[int] = setting(None, "--threads", kind=int, rule=whole(1), sweep=False,
                                     resume=MAY_CHANGE, shown_default="all cores",
                                     help="Numba and BLAS threads.")
    output_dir: str = setting("runs", "--output-dir", sweep=False, resume=IGNORED,
                              in_command=False, help="Run directories are created inside it.")
    wandb_mode: str = setting("offline", "--wandb-mode", choices=WANDB_MODES, sweep=False,
                              resume=MAY_CHANGE, in_command=False,
                              help="offline writes local wandb files (`wandb sync` later); "
                                   "online needs `wandb login` or WANDB_API_KEY; disabled "
                                   "logs nothing to wandb.")
    # -- training additions (all off by default: the assignment's flags keep their meaning)
    residual: bool = setting(False, "--residual",
                             help="Skip connections: each hidden layer as wide as the one "
                                  "before it adds that layer's output to its own.")
    norm: str = setting("none", "--norm", choices=NORMS,
                        help="Normalise each hidden layer before its activation, with a "
                             "learnt scale and shift per unit: layer is LayerNorm over the "
                             "layer's units, batch is BatchNorm over the batch's rows (its "
                             "running statistics at evaluation; each batch trains on one "
                             "thread).")
    dropout: float = setting(0.0, "--dropout", rule=fraction(True),
                             help="Dropout probability on every hidden layer's output "
                                  "(inverted dropout; off at evaluation).")
    input_dropout: float = setting(0.0, "--input-dropout", rule=fraction(True),
                                   help="Dropout probability on the inputs (pixels).")
    augment: str = setting(NO_AUGMENTATION, "--augment", rule=AUGMENT_RULE,
                           help="Augment each training image as its batch is gathered: "
                                "shift:N moves it up to N pixels each way (zero-filled), "
                                "flip mirrors it with probability 1/2; combine with a comma.")
    rotate: float = setting(0.0, "--rotate", rule=degrees(180, inclusive=True),
                            help="Rotate each training image about its centre by an angle "
                                 "drawn uniformly in [-DEG, DEG] degrees, bilinearly, zero "
                                 "outside (before --augment's flip and shift).")
    scale: float = setting(0.0, "--scale", rule=fraction(True),
                           help="Scale each training image about its centre by a factor drawn "
                                "uniformly in [1 - F, 1 + F].")
    shear: float = setting(0.0, "--shear", rule=degrees(90, inclusive=False),
                           help="Shear each training image horizontally by an angle drawn "
                                "uniformly in [-DEG, DEG] degrees.")
    elastic: float = setting(0.0, "--elastic", rule=non_negative(),
                             help="Elastic distortion (Simard et al. 2003) of each training "
                                  "image: a smooth random displacement field of this strength "
                                  "(alpha, in pixels; about 34 for 28x28 digits).")
    elastic_sigma: float = setting(4.0, "--elastic-sigma", rule=positive(),
                                   help="Smoothness of --elastic's field: its Gaussian's sigma "
                                        "in pixels.")
    lr_schedule: str = setting("constant", "--lr-schedule", choices=SCHEDULES,
                               help="Learning rate over the run's steps: constant, cosine to "
                                    "0, step (x0.1 at 50 % and 75 %), onecycle.")
    warmup_epochs: float = setting(0.0, "--warmup-epochs", rule=non_negative(),
                                   help="Linear warm-up of the learning rate over the first "
                                        "epochs (constant, cosine, step).")
    huber_delta: float = setting(1.0, "--huber-delta", rule=positive(),
                                 help="huber loss: residuals larger than this count linearly.")
    label_smoothing: float = setting(0.0, "--label-smoothing", rule=fraction(True),
                                     help="Label smoothing of cross_entropy: targets "
                                          "(1 - e) onehot + e / classes.")
    teacher: Optional[str] = setting(None, "--teacher", kind=str, sweep=False,
                                     shown_default="none",
                                     help="Knowledge distillation: a model.npz of `fastmlp "
                                          "train` on the same data and classes; the network "
                                          "also learns its probabilities softened by "
                                          "--temperature.")
    temperature: float = setting(4.0, "--temperature", rule=positive(),
                                 help="--teacher: the temperature T of the soft targets "
                                      "softmax(teacher logits / T).")
    distill_weight: float = setting(0.9, "--distill-weight", rule=unit_interval(),
                                    help="--teacher: the soft targets' weight a in the loss "
                                         "(1 - a) CE + a T^2 KL (1: the teacher alone).")
    ensemble: int = setting(1, "--ensemble", rule=whole(1),
                            help="Train this many networks side by side (member k with seed "
                                 "--seed + k) and average their outputs; model.npz holds "
                                 "them all.")
    patience: int = setting(0, "--patience", rule=whole(0),
                            help="Stop after this many epochs without a better --monitor "
                                 "figure (0: never stop early).")
    keep: str = setting("best", "--keep", choices=KEEP,
                        help="Which epoch's parameters become model.npz and the test figures: "
                             "the best --monitor figure, or the last epoch.")
    monitor: str = setting(AUTO_MONITOR, "--monitor", choices=MONITORS,
                           help="The validation figure --keep best and --patience watch; "
                                "auto: val_accuracy for classes, val_f1 for multilabel, "
                                "val_loss for regression.")
    data_dir: Optional[str] = setting(None, "--data-dir", kind=str, sweep=False,
                                      resume=MAY_CHANGE, in_command=False,
                                      shown_default="look-up",
                                      help="Directory holding the dataset's four IDX files "
                                           "(else: $FASTMLP_DATA_DIR, the cache, "
                                           "/usr/share/datasets, download).")
    # -- your own data (fastmlp/owndata.py)
    data: Optional[str] = setting(None, "--data", kind=str, sweep=False,
                                  shown_default="-d/--dataset",
                                  help="Train on your own data instead of -d: a .npz "
                                       "(x_train, y_train, x_test, y_test, optional "
                                       "class_names), a CSV file (a header row, a label column) "
                                       "or a folder of the four IDX files (EMNIST, KMNIST, ...).")
    label_column: str = setting("label", "--label-column", sweep=False,
                                help="The CSV column holding the class (every other column is "
                                     "a number).")
    task: str = setting(AUTO_TASK, "--task", choices=(AUTO_TASK,) + TASKS, sweep=False,
                        help="What the network learns: classification (a softmax over "
                             "classes), regression (numbers) or multilabel (several 0/1 "
                             "labels a row); auto decides from the loss or the data's targets "
                             "and says why.")
    target: Optional[tuple] = setting(None, "--target", kind=str, many=True, sweep=False,
                                      rule=NAMES_RULE, shown_default="--label-column",
                                      help="The column(s) of a CSV to learn: one, or several "
                                           "(multi-target regression, multilabel); the other "
                                           "columns are the inputs.")
    weight_column: Optional[str] = setting(None, "--weight-column", kind=str, sweep=False,
                                           help="A CSV column of row weights (weight 2 counts "
                                                "as the row given twice); an .npz gives "
                                                "w_train and w_test.")
    test_data: Optional[str] = setting(None, "--test-data", kind=str, sweep=False,
                                       shown_default="--test-fraction",
                                       help="A test set with the same columns as --data (a "
                                            "table in any of its formats).")
    delimiter: Optional[str] = setting(None, "--delimiter", kind=str, sweep=False,
                                       rule=DELIMITER_RULE, shown_default="detected",
                                       help="The CSV's delimiter (default: the one of , ; "
                                            "tab | that splits its header).")
    categorical: Optional[tuple] = setting(None, "--categorical", kind=str, many=True,
                                           sweep=False, rule=NAMES_RULE, shown_default="text "
                                           "columns", help="Columns of a table to one-hot "
                                           "encode although they hold numbers (codes, "
                                           "ids of a few groups); text columns always are.")
    drop: Optional[tuple] = setting(None, "--drop", kind=str, many=True, sweep=False,
                                    rule=NAMES_RULE, shown_default="none",
                                    help="Columns of a table that are not inputs (row ids, "
                                         "names, leaks of the target).")
    preprocess: bool = setting(True, "--preprocess", sweep=False,
                               help="A table's columns made into the network's inputs, "
                                    "fitted on the training rows and kept in model.npz: "
                                    "numbers standardised, text one-hot, missing cells "
                                    "imputed with an indicator; --no-preprocess: the numbers "
                                    "as they are.")
    test_fraction: float = setting(0.2, "--test-fraction", rule=fraction(False), sweep=False,
                                   help="Share of --data held out (seeded) as the test set when "
                                        "it has none of its own.")
    # set by sweeps: wandb group and a run-name prefix (not a setting: no flag)
    group: Optional[str] = field(default=None, repr=False)

    def validated(self) -> "TrainConfig":
        """Return a copy with canonical choice spellings; raise ConfigError on a bad value."""
        values = dataclasses.asdict(self)
        for entry in SETTINGS:
            value = values[entry.name]
            if value is None and entry.default is None:
                continue  # not given: its own default (e.g. the loss follows the task)
            if entry.choices is not None:
                values[entry.name] = canonical_choice(value, entry.choices, entry.flag,
                                                      setting=entry.name)
            elif entry.kind is bool and not isinstance(value, bool):
                raise ConfigError(f"{entry.flag}: {_shown(value)} must be true or false",
                                  setting=entry.name)
            elif entry.rule is not None and value is not None and not entry.rule.ok(value):
                raise ConfigError(f"{entry.flag}: {_shown(value)} {entry.rule.text}",
                                  setting=entry.name)
        widths = values["hidden_size"]
        if isinstance(widths, (tuple, list)):  # one width per layer; a single one is for all
            widths = tuple(widths) if len(widths) > 1 else widths[0]
            if isinstance(widths, tuple) and len(widths) != values["num_layers"]:
                raise ConfigError(f"{flag_name('hidden_size')}: {len(widths)} widths "
                                  f"({_shown(widths)}) for {values['num_layers']} hidden layers "
                                  f"({flag_name('num_layers')}); give one width per layer")
            values["hidden_size"] = widths
        for name in ("target", "categorical", "drop"):
            if isinstance(values[name], list):  # as a JSON file gives it back
                values[name] = tuple(values[name])
        _resolve_task(values)
        if values["label_smoothing"] > 0 and values["loss"] != "cross_entropy":
            raise ConfigError(f"{flag_name('label_smoothing')}: label smoothing is for "
                              f"cross_entropy, not {values['loss']}")
        if values["teacher"] is not None and values["loss"] not in (None, "cross_entropy"):
            raise ConfigError(f"{flag_name('teacher')}: distillation teaches classes with "
                              f"cross_entropy, not {values['loss']}", setting="teacher")
        if values["seed"] + values["ensemble"] - 1 >= 2**32:
            raise ConfigError(f"{flag_name('ensemble')}: {values['ensemble']} members need "
                              f"the seeds {values['seed']} .. {values['seed']} + "
                              f"{values['ensemble'] - 1}, which must stay below 2**32",
                              setting="ensemble")
        if values["warmup_epochs"] > 0 and values["lr_schedule"] == "onecycle":
            raise ConfigError(f"{flag_name('warmup_epochs')}: onecycle has its own warm-up "
                              "(the first 30 % of the steps); leave --warmup-epochs out")
        hidden = (values["hidden_size"] if isinstance(values["hidden_size"], tuple)
                  else (values["hidden_size"],) * values["num_layers"])
        if values["residual"] and not any(a == b for a, b in zip(hidden, hidden[1:])):
            have = (f"the hidden layers ({_shown(hidden)} units) have none" if len(hidden) > 1
                    else f"the one hidden layer ({hidden[0]} units) has none" if hidden
                    else "there is no hidden layer")
            raise ConfigError(f"{flag_name('residual')}: a skip joins two hidden layers of the "
                              f"same width in a row, and {have}", setting="residual")
        if values["norm"] != "none" and not hidden:
            raise ConfigError(f"{flag_name('norm')}: normalises the hidden layers, and there "
                              "is no hidden layer", setting="norm")
        if values["norm"] == "batch" and values["batch_size"] < 2:
            raise ConfigError(f"{flag_name('norm')} batch: a unit's statistics need batches "
                              f"of at least 2 rows, not {values['batch_size']}", setting="norm")
        checked = TrainConfig(**values)
        checked._validated = True  # not a field: dataclasses.replace() gives an unchecked copy
        return checked

    @property
    def is_validated(self) -> bool:
        """Made by validated() (and not changed since by dataclasses.replace): what the
        kernels' inputs are built from (kernels/interface.py)."""
        return self.__dict__.get("_validated", False)

    def member(self, k: int) -> "TrainConfig":
        """The settings member k of an --ensemble trains with: the seed --seed + k (its
        initialisation, shuffling and random draws; the data's splits keep --seed). Member 0
        is the run itself."""
        return self if k == 0 else dataclasses.replace(self, seed=self.seed + k).validated()

    @property
    def augmentation(self) -> tuple:
        """(shift in pixels, flip) of --augment."""
        return augment_parts(self.augment)

    @property
    def deformations(self) -> tuple:
        """The names of the deformations that are on (--rotate, --scale, --shear, --elastic)."""
        return tuple(name for name in DEFORMATIONS if getattr(self, name) > 0)

    @property
    def hidden_widths(self) -> tuple:
        """Units of each hidden layer (hidden_size is one width for all, or one each)."""
        if isinstance(self.hidden_size, (tuple, list)):
            return tuple(self.hidden_size)
        return (self.hidden_size,) * self.num_layers

    @property
    def layer_sizes(self) -> tuple:
        """Units per layer, input to output: the dataset's pixels, the hidden widths, its
        classes. (With --data the trainer takes the widths from the data: Splits.layer_sizes.)"""
        data = DATASET_REGISTRY[self.dataset]
        return (data.num_inputs,) + self.hidden_widths + (data.num_classes,)

    def run_name(self) -> str:
        """The assignment's run-name style, e.g. hl_3_bs_32_ac_ReLU."""
        return RUN_NAME.format(**vars(self))

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

    @classmethod
    def from_saved(cls, values: dict) -> "TrainConfig":
        """The validated settings of a saved model (model.npz's config): what the kernels
        read to run it. Names this fastmlp does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in known}).validated()

    def train_command(self) -> str:
        """The `fastmlp train ...` command line that reproduces this configuration."""
        parts = ["fastmlp", "train"]
        for entry in SETTINGS:
            value = getattr(self, entry.name)
            # the assignment's flags always; the extras when they differ from their default
            shown = entry.short is not None or value != entry.default
            if entry.name == "dataset" and self.data is not None:
                shown = False  # --data replaces -d: showing both would mislead
            if entry.in_command and shown and (value is not None or entry.kind is bool):
                parts += entry.command_words(value)
        return shlex.join(parts)


RUN_NAME = "hl_{num_layers}_bs_{batch_size}_ac_{activation}"  # the assignment's style


def _resolve_task(values: dict) -> None:
    """The task and the loss of validated settings, in place: an auto task is the loss's task
    when a loss is given, classification for a registry dataset, else left to the trainer
    (which decides from the data's targets: owndata.decide_task); a missing loss is its
    task's default, an auto --monitor its task's; a loss or monitor of another task is a
    ConfigError."""
    task, loss = values["task"], values["loss"]
    if task == AUTO_TASK:
        if loss is not None:
            task = LOSS_TASK[loss]
        elif values["data"] is None:
            task = "classification"  # the registry's datasets are images of classes
    if task != AUTO_TASK:
        if loss is None:
            loss = TASK_LOSSES[task][0]
        elif loss not in TASK_LOSSES[task]:
            raise ConfigError(f"{flag_name('loss')}: {loss} is a loss for {LOSS_TASK[loss]}; "
                              f"{task} takes {', '.join(TASK_LOSSES[task])}", setting="loss")
    monitor = values["monitor"]
    if task != AUTO_TASK and monitor == AUTO_MONITOR:
        monitor = DEFAULT_MONITOR[task]
    elif task != AUTO_TASK and monitor not in monitors_of(task):
        raise ConfigError(f"{flag_name('monitor')}: {task} records "
                          f"{', '.join(monitors_of(task))}, not {monitor}", setting="monitor")
    values["task"], values["loss"], values["monitor"] = task, loss, monitor


def _shown(value) -> str:
    """A value as a user typed it: `64 0` for widths, repr otherwise."""
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return repr(value)


# ----------------------------------------------------------------------------- reading it

@dataclass(frozen=True)
class Setting:
    """One row of the table, read back from TrainConfig's field metadata."""

    name: str
    default: object
    long: str
    short: Optional[str]
    help: str
    kind: type
    choices: Optional[tuple]
    rule: Optional[Rule]
    sweep: bool
    resume: str
    in_command: bool
    shown_default: Optional[str]
    many: bool

    @property
    def flag(self) -> str:
        """The flag(s) as errors name them: "-b/--batch_size", "--seed"."""
        return f"{self.short}/{self.long}" if self.short else self.long

    @property
    def off_flag(self) -> str:
        """The flag that turns a bool setting off: --no-preprocess for --preprocess."""
        return f"--no-{self.long[2:]}"

    def command_words(self, value, long: bool = False) -> list:
        """The command-line words that give the setting `value`: its flag (the short one
        unless `long`) and each value (`-sz 512 256`), or a bool's --flag / --no-flag."""
        if self.kind is bool:
            return [self.long if value else self.off_flag]
        values = value if isinstance(value, (tuple, list)) else (value,)
        return [self.long if long else self.short or self.long, *map(str, values)]

    @property
    def valid_values(self) -> str:
        if self.kind is bool:
            return f"`{self.long}`, `{self.off_flag}`"
        if self.choices is not None:
            return ", ".join(f"`{name}`" for name in self.choices)
        return self.rule.short if self.rule is not None else ""

    @property
    def default_text(self) -> str:
        return self.shown_default if self.default is None else str(self.default)


SETTINGS = tuple(Setting(name=f.name, default=f.default, **f.metadata["setting"])
                 for f in dataclasses.fields(TrainConfig) if "setting" in f.metadata)
SETTING = {entry.name: entry for entry in SETTINGS}
# The settings a sweep file may vary (wandb project/entity are top-level sweep keys).
SWEEPABLE = tuple(entry.name for entry in SETTINGS if entry.sweep)


def flag_name(field_name: str) -> str:
    """The flag a user typed for a field, for error messages ("-b/--batch_size")."""
    entry = SETTING.get(field_name)
    return entry.flag if entry else field_name


# A table (--data with a CSV, Parquet or Feather file) trains with these where the command
# does not say otherwise: measured on real tables with text columns (docs/benchmarks.md,
# "Real tables"); images keep the defaults of the table above.
TABLE_DEFAULTS = {"num_layers": 2, "hidden_size": 128, "batch_size": 128, "epochs": 30,
                  "lr_schedule": "cosine", "dropout": 0.2}


def with_table_defaults(values: dict, given) -> dict:
    """values with TABLE_DEFAULTS for the settings not in `given` when values["data"] is a
    table; else values as they are."""
    from .tables import is_table

    if values.get("data") is None or not is_table(values["data"]):
        return values
    return {**values, **{name: value for name, value in TABLE_DEFAULTS.items()
                         if name not in given}}


def infer_num_layers(values: dict, num_layers_given: bool) -> dict:
    """`-sz 512 256 128` without -nhl: the number of hidden layers is the number of widths."""
    widths = values.get("hidden_size")
    if not num_layers_given and isinstance(widths, (tuple, list)) and len(widths) > 1:
        return dict(values, num_layers=len(widths))
    return values


def settings_table_markdown() -> str:
    """The README's flag table, made from SETTINGS."""
    lines = ["| short | long | default | choices / valid values | meaning |",
             "|---|---|---|---|---|"]
    for entry in SETTINGS:
        short = f"`{entry.short}`" if entry.short else ""
        default = f"`{entry.default}`" if entry.default is not None else f"({entry.shown_default})"
        lines.append(f"| {short} | `{entry.long}` | {default} | {entry.valid_values} | "
                     f"{entry.help} |")
    return "\n".join(lines)


def resume_config(saved: TrainConfig, overrides: dict) -> TrainConfig:
    """The saved configuration of an interrupted run with `overrides` (field -> value, e.g.
    the flags typed with --resume) applied: the one rule of resume.

    A FIXED setting that differs from the saved one is a ConfigError (a resumed run computes
    exactly what the interrupted one would have); MAY_CHANGE settings take the new value;
    IGNORED ones are dropped."""
    values = {name: value for name, value in overrides.items()
              if name in SETTING and SETTING[name].resume != IGNORED}

    def refuse(name):
        local = ", ".join(entry.short or entry.long for entry in SETTINGS
                          if entry.resume == MAY_CHANGE)
        raise ConfigError(f"{flag_name(name)}: --resume continues a run with the settings it "
                          f"started with ({getattr(saved, name)!r}); only {local} may change "
                          "(drop the flag, or start a new run)", setting=name)

    for name, value in values.items():  # before the rules that tie settings together
        entry = SETTING[name]
        if entry.resume == FIXED and entry.choices and value is not None \
                and canonical_choice(value, entry.choices, entry.flag) != getattr(saved, name):
            refuse(name)
        if entry.resume == FIXED and entry.kind is bool and value != getattr(saved, name):
            refuse(name)
    candidate = dataclasses.replace(saved, **values).validated()
    for name in values:
        if SETTING[name].resume == FIXED and getattr(candidate, name) != getattr(saved, name):
            refuse(name)
    return dataclasses.replace(candidate,
                               group=overrides.get("group", saved.group)).validated()
