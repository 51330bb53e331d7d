"""The kernels' interface, in one place: the name tables of every choice, the integer
`codes` and float `hyper` arrays the kernels read, and the one function that builds them
from a validated TrainConfig.

    ACTIVATIONS, LOSSES, OPTIMIZERS, SCHEDULES,  name tables: a name's code is its index
    OUTPUTS, TASKS, NORMS                        (TASK_LOSSES, LOSS_OUTPUT: what goes with what)
    CODES, CODE_*                                the entries of `codes` (int64)
    HYPERPARAMETERS, HP_*                        the entries of `hyper` (float64)
    BUFFERS                                      the rows of the (4, P) `buffers` array
    kernel_inputs(config, steps_per_epoch, image_width) -> (codes, hyper)
    check_codes(codes)                           the kernels' own check at their entry

A name the kernels read that a TrainConfig lacks is an error at once (no default), and a
code outside its table makes a kernel raise before any work (check_codes), so a new choice
can never train silently as another. To add a choice (an activation, a loss, an output
kind): its name at the end of its table here, its code constant below it, and its branch in
the kernel that branches on it (docs/ARCHITECTURE.md, "To add ...").

Plain Python and NumPy only: config.py, the engine and the kernels all import from here.
"""
import numpy as np

from . import kernel

# ----------------------------------------------------------------------------- name tables

ACTIVATIONS = ("identity", "sigmoid", "tanh", "ReLU", "GELU", "SiLU", "LeakyReLU")
IDENTITY, SIGMOID, TANH, RELU, GELU, SILU, LEAKY_RELU = range(len(ACTIVATIONS))
# The activations whose derivative cannot be read from their output (GELU and SiLU are not
# one-to-one): the training pass keeps their pre-activations Z for the backward pass. Every
# other activation's derivative is written in terms of its output A, and keeps nothing more.
NEEDS_PRE_ACTIVATIONS = ("GELU", "SiLU")
# ... as a flag per activation code, for the kernels (activations.needs_pre_activations)
PRE_ACTIVATIONS_NEEDED = np.array([name in NEEDS_PRE_ACTIVATIONS for name in ACTIVATIONS])
LEAKY_SLOPE = 0.01  # LeakyReLU's slope for z < 0 by default (PyTorch's): --leaky-slope

LOSSES = ("mean_squared_error", "cross_entropy", "squared_error", "absolute_error", "huber",
          "poisson", "binary_cross_entropy")
(MEAN_SQUARED_ERROR, CROSS_ENTROPY, SQUARED_ERROR, ABSOLUTE_ERROR, HUBER, POISSON,
 BINARY_CROSS_ENTROPY) = range(len(LOSSES))

# The output layer's function at inference (training goes through the loss): each loss's
# own, so the output kind follows from the loss (LOSS_OUTPUT).
OUTPUTS = ("softmax", "identity", "exp", "sigmoid")
SOFTMAX, IDENTITY_OUTPUT, EXP, SIGMOID_OUTPUT = range(len(OUTPUTS))

# What a network learns, and the losses of each: classes (one integer label per row),
# regression (T float targets per row), multilabel (T 0/1 labels per row). A task's first
# loss is its default.
TASKS = ("classification", "regression", "multilabel")
TASK_LOSSES = {"classification": ("cross_entropy", "mean_squared_error"),
               "regression": ("squared_error", "absolute_error", "huber", "poisson"),
               "multilabel": ("binary_cross_entropy",)}
LOSS_TASK = {loss: task for task, losses in TASK_LOSSES.items() for loss in losses}
LOSS_OUTPUT = {"cross_entropy": "softmax", "mean_squared_error": "softmax",
               "squared_error": "identity", "absolute_error": "identity",
               "huber": "identity", "poisson": "exp", "binary_cross_entropy": "sigmoid"}

OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "adamw")
SGD, MOMENTUM, NAG, RMSPROP, ADAM, NADAM, ADAMW = range(len(OPTIMIZERS))

SCHEDULES = ("constant", "cosine", "step", "onecycle")
CONSTANT, COSINE, STEP, ONECYCLE = range(len(SCHEDULES))

# The normalisation of each hidden layer's pre-activations (--norm; kernels/norm.py): none;
# LayerNorm over each row's units; BatchNorm over each unit's rows in the batch (running
# statistics for evaluation). Both with a learnt scale and shift per unit.
NORMS = ("none", "layer", "batch")
NO_NORM, LAYER_NORM, BATCH_NORM = range(len(NORMS))
NORM_EPS = 1e-5  # added to the variance (PyTorch's nn.LayerNorm and nn.BatchNorm1d default)
BATCH_NORM_MOMENTUM = 0.1  # running = (1 - m) running + m batch (PyTorch's default)
# The vectors of n_out values each hidden layer holds after its weights, in this order, by
# --norm (model.Layout; the output layer holds its bias alone)
NORM_VECTORS = {"none": ("bias",), "layer": ("bias", "gamma", "beta"),
                "batch": ("bias", "gamma", "beta", "running_mean", "running_var")}
NORM_VECTOR_COUNTS = np.array([len(NORM_VECTORS[name]) for name in NORMS], dtype=np.int64)

# ----------------------------------------------------------------------------- the bundles

BUFFERS = ("params", "state1", "state2", "grads")

# The integer choices, in the order of `codes`, each with the name table it indexes (None:
# a whole number >= 0 itself: the augmentation's shift in pixels, flip 0/1, and the image
# width in pixels, which the caller gives). output: the loss's output kind (LOSS_OUTPUT).
# residual 0/1: the skip connections (has_skip says which layers have one).
CODE_TABLES = {"activation": ACTIVATIONS, "loss": LOSSES, "optimizer": OPTIMIZERS,
               "lr_schedule": SCHEDULES, "shift": None, "flip": None, "image_width": None,
               "output": OUTPUTS, "residual": None, "norm": NORMS}
CODES = tuple(CODE_TABLES)
(CODE_ACTIVATION, CODE_LOSS, CODE_OPTIMIZER, CODE_SCHEDULE, CODE_SHIFT, CODE_FLIP,
 CODE_IMAGE_WIDTH, CODE_OUTPUT, CODE_RESIDUAL, CODE_NORM) = range(len(CODES))
# codes[i] must be below CODE_LIMITS[i] (-1: no upper limit); check_codes reads this
CODE_LIMITS = np.array([len(table) if table is not None else -1
                        for table in CODE_TABLES.values()], dtype=np.int64)

# The float settings, in the order of `hyper`: TrainConfig field names, and those derived
# from them and the epoch's length (the schedule's total and warm-up steps; distill_weight,
# the weight of the teacher's soft targets: --distill-weight with a --teacher, else 0).
HYPERPARAMETERS = ("learning_rate", "momentum", "beta", "beta1", "beta2", "epsilon",
                   "weight_decay", "dropout", "input_dropout", "label_smoothing", "seed",
                   "total_steps", "warmup_steps", "huber_delta", "leaky_slope",
                   "distill_weight", "temperature")
(HP_LEARNING_RATE, HP_MOMENTUM, HP_BETA, HP_BETA1, HP_BETA2, HP_EPSILON, HP_WEIGHT_DECAY,
 HP_DROPOUT, HP_INPUT_DROPOUT, HP_LABEL_SMOOTHING, HP_SEED, HP_TOTAL_STEPS,
 HP_WARMUP_STEPS, HP_HUBER_DELTA, HP_LEAKY_SLOPE, HP_DISTILL_WEIGHT,
 HP_TEMPERATURE) = range(len(HYPERPARAMETERS))

# The input deformations of the gather (kernels/deform.py), appended after the others: all 0
# (off) by default but the elastic field's smoothness.
DEFORMATIONS = ("rotate", "scale", "shear", "elastic")
HYPERPARAMETERS += DEFORMATIONS + ("elastic_sigma",)
HP_ROTATE, HP_SCALE, HP_SHEAR, HP_ELASTIC, HP_ELASTIC_SIGMA = range(len(HYPERPARAMETERS) - 5,
                                                                  len(HYPERPARAMETERS))


def kernel_inputs(config, steps_per_epoch: int = 0, image_width: int = 0):
    """(codes, hyper) of a validated TrainConfig (TrainConfig.validated()).

    steps_per_epoch: optimizer steps in one epoch (the schedule's total and warm-up steps
    follow from it); image_width: pixels per image row (augmentation needs it; 0 for a
    table). Anything else, a mapping or an unvalidated config, is a TypeError; a name the
    kernels read that the config lacks is an AttributeError naming it."""
    if not getattr(config, "is_validated", False):
        raise TypeError(f"the kernels' inputs come from a validated TrainConfig "
                        f"(TrainConfig(...).validated()), not {type(config).__name__}")
    if config.loss is None:
        raise ValueError("the task is not decided yet (task auto on data not read): the "
                         "trainer resolves it before the kernels run")
    shift, flip = config.augmentation  # (pixels, bool) of --augment
    derived = {"shift": shift, "flip": int(flip), "image_width": image_width,
               "output": LOSS_OUTPUT[config.loss],
               "total_steps": config.epochs * steps_per_epoch,
               "warmup_steps": config.warmup_epochs * steps_per_epoch,
               # no teacher, no soft targets: the kernels train on the labels alone
               "distill_weight": config.distill_weight if config.teacher is not None else 0.0}

    def value(name):
        if name in derived:
            return derived[name]
        if not hasattr(config, name):
            raise AttributeError(f"the kernels read {name!r}, which the config lacks")
        return getattr(config, name)

    codes = np.array([CODE_TABLES[name].index(value(name)) if CODE_TABLES[name] is not None
                      else int(value(name)) for name in CODES], dtype=np.int64)
    hyper = np.array([float(value(name)) for name in HYPERPARAMETERS], dtype=np.float64)
    return codes, hyper


@kernel()
def check_codes(codes):
    """Raise (before any work, outside the kernels' parallel loops) on a code outside its
    table: the kernels' branches name every code, and none falls through to another."""
    if codes.shape[0] != CODE_LIMITS.shape[0]:
        raise ValueError("codes: wrong number of entries")
    for i in range(codes.shape[0]):
        if codes[i] < 0 or (CODE_LIMITS[i] >= 0 and codes[i] >= CODE_LIMITS[i]):
            raise ValueError("codes: a choice's code is outside its table "
                             "(see fastmlp/kernels/interface.py)")


@kernel()
def has_skip(sizes, l, residual):
    """Whether dense layer l's output adds its input (--residual): a hidden layer whose input
    is a hidden layer of the same width, A_{l+1} = act(Z_{l+1}) + A_l. sizes: units per layer,
    input first."""
    return residual != 0 and 1 <= l < len(sizes) - 2 and sizes[l] == sizes[l + 1]


@kernel()
def has_norm(sizes, l, norm):
    """Whether dense layer l's pre-activations go through the normalisation `norm` (a code
    of NORMS; --norm): every hidden layer, never the output layer. Such a layer holds a
    scale and a shift per unit after its bias, and BatchNorm its running mean and variance
    (model.Layout, NORM_VECTORS)."""
    return norm != NO_NORM and l < len(sizes) - 2
