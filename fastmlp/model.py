"""Parameter layout: ONE flat float buffer holding every layer's weights and biases.

Layer l maps n_in = sizes[l] units to n_out = sizes[l+1] units with
    W_l: (n_in, n_out), row-major, at flat[w_offsets[l] : w_offsets[l] + n_in*n_out]
    b_l: (n_out,),                  right after W_l
    gamma_l, beta_l: (n_out,) each, after b_l, in a hidden layer with --norm layer or batch
                                    (the scale and shift, kernels/norm.py)
    running mean, running variance: (n_out,) each, after beta_l, with --norm batch (what
                                    evaluation normalises with; never a gradient)
so a batch goes forward as A @ W + b. Gradients and optimizer state use buffers of the same
shape, which makes every optimizer one loop over the whole buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The `-w_i/--weight_init` choices, each drawn in init_params.
WEIGHT_INITS = ("random", "Xavier", "He")
RANDOM_INIT_STD = 0.1  # "random" init: W ~ N(0, 0.1^2)


@dataclass(frozen=True)
class Layout:
    sizes: tuple  # units per layer, input first: (784, 64, 64, 64, 10)
    norm: str = "none"  # --norm: what each hidden layer holds after W (NORM_VECTORS)

    @property
    def num_dense(self) -> int:
        return len(self.sizes) - 1

    def normed(self, l: int) -> bool:
        """Whether dense layer l holds a normalisation's gamma and beta (the kernels' rule,
        kernels.interface.has_norm)."""
        from .kernels.interface import NORMS, has_norm

        return bool(has_norm(np.array(self.sizes, dtype=np.int64), l, NORMS.index(self.norm)))

    def _vectors(self, l: int) -> tuple:
        """The names of the (n_out,) vectors dense layer l holds after W: its bias, then the
        normalisation's (kernels.interface.NORM_VECTORS) where normed."""
        from .kernels.interface import NORM_VECTORS

        return NORM_VECTORS[self.norm if self.normed(l) else "none"]

    def _block(self, l: int) -> int:
        """Parameters of dense layer l: W and its vectors."""
        n_in, n_out = self.sizes[l], self.sizes[l + 1]
        return n_in * n_out + n_out * len(self._vectors(l))

    @property
    def w_offsets(self) -> np.ndarray:
        """Start of each W_l in the flat buffer (b_l follows W_l)."""
        blocks = [self._block(l) for l in range(self.num_dense)]
        return np.concatenate([[0], np.cumsum(blocks[:-1])]).astype(np.int64)

    @property
    def num_params(self) -> int:
        return sum(self._block(l) for l in range(self.num_dense))

    def views(self, flat: np.ndarray) -> list:
        """[(W_0, b_0), (W_1, b_1), ...] as views into `flat` (writes go through); a normed
        layer's tuple is (W, b, gamma, beta) (--norm layer) or (W, b, gamma, beta, running
        mean, running variance) (--norm batch)."""
        layers = []
        for l, at in enumerate(self.w_offsets):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            layer = [flat[at:at + n_in * n_out].reshape(n_in, n_out)]
            at += n_in * n_out
            for _vector in self._vectors(l):
                layer.append(flat[at:at + n_out])
                at += n_out
            layers.append(tuple(layer))
        return layers

    def skips(self, residual: bool) -> list:
        """For each dense layer: whether its output adds its input (--residual; the kernels'
        rule, kernels.interface.has_skip)."""
        from .kernels.interface import has_skip

        sizes = np.array(self.sizes, dtype=np.int64)
        return [bool(has_skip(sizes, l, int(residual))) for l in range(self.num_dense)]

    def arrays(self) -> tuple:
        """The `net` bundle the kernels take: (sizes, w_offsets, decay segments)."""
        return (np.array(self.sizes, dtype=np.int64), self.w_offsets, self.decay_segments())

    def decay_segments(self) -> np.ndarray:
        """(start, end, is_weight) rows covering the flat buffer; weight decay applies to W
        only (not to b, gamma, beta)."""
        rows = []
        for l, at in enumerate(self.w_offsets):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            rows.append((at, at + n_in * n_out, 1))
            rows.append((at + n_in * n_out, at + self._block(l), 0))
        return np.array(rows, dtype=np.int64)


def init_params(layout: Layout, weight_init: str, rng: np.random.Generator, dtype) -> np.ndarray:
    """A new flat parameter buffer: weights drawn per `weight_init`, biases zero; a
    normalisation's gamma one, beta zero, running mean zero and running variance one."""
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"unknown weight_init {weight_init!r}")
    flat = np.zeros(layout.num_params, dtype=dtype)
    for l, (weights, *vectors) in enumerate(layout.views(flat)):
        for name, vector in zip(layout._vectors(l), vectors):
            if name in ("gamma", "running_var"):
                vector[...] = 1.0
        n_in, n_out = weights.shape
        if weight_init == "Xavier":  # Glorot uniform
            limit = np.sqrt(6.0 / (n_in + n_out))
            weights[...] = rng.uniform(-limit, limit, size=weights.shape)
        elif weight_init == "He":
            weights[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=weights.shape)
        else:
            weights[...] = rng.normal(0.0, RANDOM_INIT_STD, size=weights.shape)
    return flat


# ----------------------------------------------------------------------------- model files

MODEL_FORMAT_VERSION = 2  # 2: a table's preprocessing may be in the file
ENSEMBLE_FORMAT_VERSION = 3  # 3: params (K, P), one row per member of an --ensemble
READABLE_FORMAT_VERSIONS = (1, 2, 3)


def save_model(path, layout: Layout, params: np.ndarray, config: dict, class_names,
               target_scaling=None, preprocessing=None) -> None:
    """Write model.npz atomically: weights, architecture, config, the outputs' names (classes,
    or targets), format version; target_mean, target_scale when the network learnt
    standardised regression targets (its outputs times target_scale plus target_mean are
    the predictions); `preprocessing` (JSON) when it was trained on a table's columns made
    into numbers (preprocess.Preprocessing). params: the flat buffer (P,) of one network
    (format version 2), or an ensemble's (K, P), one row per member (version 3, which an
    older fastmlp refuses rather than reading one member)."""
    import json

    from .files import atomic_writer

    extras = {} if target_scaling is None else dict(
        target_mean=np.asarray(target_scaling[0], np.float64),
        target_scale=np.asarray(target_scaling[1], np.float64))
    if preprocessing is not None:
        extras["preprocessing"] = np.str_(preprocessing.to_json())
    with atomic_writer(path, "wb") as handle:
        version = MODEL_FORMAT_VERSION if params.ndim == 1 else ENSEMBLE_FORMAT_VERSION
        np.savez(handle, format_version=np.int64(version),
                 sizes=np.array(layout.sizes, dtype=np.int64), params=params,
                 activation=np.str_(config["activation"]), loss=np.str_(config["loss"]),
                 class_names=np.array(list(class_names)), config_json=np.str_(json.dumps(config)),
                 **extras)


@dataclass
class ModelExtras:
    """What a model file may hold beside the network."""

    target_scaling: tuple | None = None  # (target_mean, target_scale), or None
    preprocessing: object = None  # preprocess.Preprocessing, or None (numbers as they are)


def load_extras(path) -> ModelExtras:
    """The ModelExtras of a file that load_model has read."""
    from .preprocess import Preprocessing

    with np.load(path, allow_pickle=False) as data:
        scaling = None if "target_mean" not in data.files else (
            np.array(data["target_mean"]), np.array(data["target_scale"]))
        preprocessing = None if "preprocessing" not in data.files else \
            Preprocessing.from_json(str(data["preprocessing"]))
    return ModelExtras(scaling, preprocessing)


def load_model(path):
    """(layout, params, config dict, class names) from a file written by save_model;
    params (P,), or (K, P) for an ensemble of K members.

    Anything else (a missing, truncated or foreign file, another format version, a
    checkpoint, an architecture that does not fit its weights) is a ModelFileError whose
    message says what is wrong in one line.
    """
    import json
    import zipfile
    from pathlib import Path

    from .errors import ModelFileError
    from .kernels.interface import ACTIVATIONS, LOSSES, NORMS

    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a model file (try {path / 'model.npz'})")
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
                raise ModelFileError(f"{path}: not a fastmlp model file (not an .npz archive)")
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ModelFileError(f"{path}: not a fastmlp model file (a bare .npy array)")
            if "format_version" not in data.files:
                if "checkpoint_format_version" in data.files:
                    raise ModelFileError(f"{path}: is a training checkpoint, not a model; use "
                                         "the run's model.npz (or finish it with "
                                         "`fastmlp train --resume RUN_DIR`)")
                raise ModelFileError(f"{path}: not a fastmlp model file (no format_version)")
            version = int(data["format_version"])
            if version not in READABLE_FORMAT_VERSIONS:
                raise ModelFileError(f"{path}: model format version {version}, "
                                     f"this fastmlp reads version {READABLE_FORMAT_VERSIONS[-1]}"
                                     " and older")
            missing = [key for key in ("sizes", "params", "config_json", "class_names")
                       if key not in data.files]
            if missing:
                raise ModelFileError(f"{path}: incomplete model file (missing {', '.join(missing)})")
            sizes = data["sizes"]
            params = data["params"]
            config = json.loads(str(data["config_json"]))
            class_names = tuple(str(name) for name in data["class_names"])
    except ModelFileError:
        raise
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFileError(f"{path}: no such model file") from None
    except PermissionError:
        raise ModelFileError(f"{path}: permission denied") from None
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: not a fastmlp model file, or a corrupt one "
                             f"({exc.__class__.__name__}: {exc})") from None
    if sizes.ndim != 1 or len(sizes) < 2 or sizes.dtype.kind not in "iu" or (sizes < 1).any():
        raise ModelFileError(f"{path}: corrupt architecture {sizes.tolist()}")
    norm = config.get("norm", "none") if isinstance(config, dict) else "none"
    if norm not in NORMS:
        raise ModelFileError(f"{path}: corrupt model configuration (norm {norm!r} unknown)")
    layout = Layout(tuple(int(n) for n in sizes), norm)
    shape = "-".join(map(str, layout.sizes))
    members = config.get("ensemble", 1) if isinstance(config, dict) else 1
    if version < ENSEMBLE_FORMAT_VERSION:
        wanted, needs = (layout.num_params,), f"{layout.num_params}"
    else:
        members = members if isinstance(members, int) and members >= 2 else 2
        wanted, needs = (members, layout.num_params), f"{members} x {layout.num_params}"
    if params.dtype not in (np.float32, np.float64) or params.shape != wanted:
        raise ModelFileError(f"{path}: holds {params.dtype} {list(params.shape)} parameters, its "
                             f"architecture {shape} needs {needs} float32/float64")
    if not isinstance(config, dict) or config.get("activation") not in ACTIVATIONS \
            or config.get("loss") not in LOSSES:
        raise ModelFileError(f"{path}: corrupt model configuration (activation or loss unknown)")
    if len(class_names) != layout.sizes[-1]:
        raise ModelFileError(f"{path}: {len(class_names)} class names for "
                             f"{layout.sizes[-1]} outputs")
    if not np.isfinite(params).all():
        raise ModelFileError(f"{path}: the weights contain NaN or infinite values")
    return layout, params, config, class_names
