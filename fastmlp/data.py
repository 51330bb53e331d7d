"""MNIST / Fashion-MNIST: read IDX files, find them on disk, download and verify, split.

Look-up order for a dataset's four files (see `find_dataset_dir`):

1. an explicit directory: the `data_dir` argument, else the env FASTMLP_DATA_DIR
   (the files must be there; it may hold them directly or in a `<name>/` subfolder);
2. the cache: `cache_dir()/<name>/`;
3. copies on the machine: Fashion-MNIST's Debian package directory; MNIST's copy in the
   repository (`data/mnist/` of the clone fastmlp runs from, `CLONE_MNIST_DIR`);
4. a download into `cache_dir()/<name>/` (FASTMLP_MIRROR, when set, is tried first).

Every bad-data situation raises `DataError` with one line naming the file and the problem.
The user's own data (`--data`) is fastmlp/owndata.py's, built on this module's IDX reader.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

# The four files of both datasets, by the Dataset field they fill.
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

# Where the Debian package `dataset-fashion-mnist` installs the files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The repository's copy of MNIST (data/mnist/README.md); absent from an installed wheel.
CLONE_MNIST_DIR = Path(__file__).resolve().parents[1] / "data" / "mnist"

DOWNLOAD_TIMEOUT_S = 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetSpec:
    """What we know about a dataset before touching the disk."""

    class_names: tuple
    sha256: dict  # file name -> SHA-256 of its *decompressed* bytes
    mirrors: tuple  # base URLs; a file's URL is base + file name
    files: dict = field(default_factory=lambda: dict(FILES))
    image_shape: tuple = (28, 28)

    @property
    def num_inputs(self) -> int:
        """Pixels per image: the network's input width."""
        return int(np.prod(self.image_shape))

    @property
    def num_classes(self) -> int:
        """Classes: the network's output width."""
        return len(self.class_names)


REGISTRY = {
    "mnist": DatasetSpec(
        class_names=tuple(str(digit) for digit in range(10)),
        sha256={
            "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion_mnist": DatasetSpec(
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        sha256={
            "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}

CLASS_NAMES = {name: spec.class_names for name, spec in REGISTRY.items()}
# The `-d/--dataset` choices.
DATASETS = tuple(REGISTRY)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset in memory: uint8 pixels flattened to (N, 784), uint8 labels (a registry
    dataset); features, class indices or targets, weights (own data)."""

    name: str
    class_names: tuple
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    image_shape: tuple | None = None  # own data: (height, width) of IDX images, else None
    # own data (owndata.py): the task it was decided to be and why; for regression and
    # multilabel, y holds float targets (N, T) and class_names the targets' names
    task: str = "classification"
    task_reason: str | None = None
    w_train: np.ndarray | None = field(default=None, repr=False)  # row weights, or None
    w_test: np.ndarray | None = field(default=None, repr=False)
    # a table's: how its columns became x (preprocess.Preprocessing), None for numbers as
    # they are
    preprocessing: object = field(default=None, repr=False)


# --------------------------------------------------------------------------- IDX files

# magic number -> number of dimensions (the only two kinds MNIST-style data uses)
_IDX_NDIM = {0x00000801: 1, 0x00000803: 3}


def _open_decompressed(path: Path):
    """Binary file object yielding the decompressed bytes (gzip when the name ends .gz)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


# What can go wrong while reading a (possibly gzip-compressed) file.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _read_problem(exc: BaseException) -> str:
    """One-line description of a read or decompression failure (without the file name)."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, EOFError):
        return f"truncated gzip stream ({exc})"
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return f"corrupt gzip data ({exc})"
    return f"cannot read ({exc})"


def read_idx(path) -> np.ndarray:
    """Read an IDX file (.gz or raw) into a uint8 array shaped by its header.

    Checks the magic number (labels 0x00000801, 1-D; images 0x00000803, 3-D) and that the
    payload holds exactly the number of bytes the header promises.
    """
    path = Path(path)
    try:
        with _open_decompressed(path) as f:
            magic_bytes = f.read(4)
            if len(magic_bytes) < 4:
                raise DataError(f"{path}: too short for an IDX header ({len(magic_bytes)} bytes)")
            magic = int.from_bytes(magic_bytes, "big")
            if magic not in _IDX_NDIM:
                raise DataError(
                    f"{path}: not an MNIST IDX file (magic 0x{magic:08x}, "
                    "expected 0x00000801 labels or 0x00000803 images)"
                )
            ndim = _IDX_NDIM[magic]
            dim_bytes = f.read(4 * ndim)
            if len(dim_bytes) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header (needs {ndim} dimensions)")
            shape = tuple(np.frombuffer(dim_bytes, dtype=">u4").tolist())
            size = math.prod(shape)
            try:
                out = np.empty(size, dtype=np.uint8)
            except (MemoryError, ValueError):
                raise DataError(f"{path}: IDX header claims an impossible shape {shape}") from None
            filled = _read_into(f, out)
            if filled < size:
                raise DataError(
                    f"{path}: truncated: header {shape} promises {size} data bytes, found {filled}"
                )
            if f.read(1):
                raise DataError(f"{path}: trailing bytes after the {size} data bytes of shape {shape}")
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: {_read_problem(exc)}") from None
    return out.reshape(shape)


def _read_into(f, out: np.ndarray) -> int:
    """Fill `out` from `f` without an intermediate copy; return the number of bytes read."""
    view = memoryview(out)
    filled = 0
    while filled < len(view):
        n = f.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def sha256_of_decompressed(path) -> str:
    """Hex SHA-256 of the file's decompressed bytes (the raw bytes for a non-.gz file)."""
    path = Path(path)
    try:
        return _sha256(path)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: {_read_problem(exc)}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with _open_decompressed(path) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- locating

def _spec(name: str) -> tuple[str, DatasetSpec]:
    """Canonical dataset name (accepts `fashion-mnist`) and its registry entry."""
    canonical = str(name).lower().replace("-", "_")
    if canonical not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}")
    return canonical, REGISTRY[canonical]


def cache_dir() -> Path:
    """Where downloads go: env FASTMLP_CACHE_DIR, else the user cache `fastmlp/datasets`."""
    override = os.environ.get("FASTMLP_CACHE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("fastmlp")) / "datasets"


def file_in(directory: Path, file_name: str) -> Path | None:
    """The file in `directory`, as `<file>.gz` or uncompressed `<file>`, or None."""
    for candidate in (directory / file_name, directory / file_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _missing_files(directory: Path, spec: DatasetSpec) -> list[str]:
    return [f for f in spec.files.values() if file_in(directory, f) is None]


def _explicit_dir(name: str, spec: DatasetSpec, data_dir: Path) -> Path:
    """The directory under an explicit data_dir that holds all files, else DataError."""
    candidates = [data_dir, data_dir / name]
    if name == "fashion_mnist":
        candidates.append(data_dir / "fashion-mnist")
    for directory in candidates:
        if not _missing_files(directory, spec):
            return directory
    # Report against the candidate that came closest (the top directory on a tie).
    closest = min(candidates, key=lambda d: len(_missing_files(d, spec)))
    missing = _missing_files(closest, spec)[0]
    raise DataError(f"{closest / missing}: file not found in the given {name} data directory "
                    f"({len(_missing_files(closest, spec))} of 4 files missing)")


def _machine_dirs(name: str) -> list[Path]:
    """Copies on the machine: the Debian package for Fashion-MNIST, the clone's for MNIST
    (when fastmlp runs from a clone)."""
    if name == "fashion_mnist":
        return [DEBIAN_FASHION_MNIST_DIR]
    return [CLONE_MNIST_DIR] if CLONE_MNIST_DIR.is_dir() else []


def _locate(name: str, spec: DatasetSpec, data_dir) -> tuple[Path | None, list[Path]]:
    """(directory holding all four files or None, the directories searched)."""
    if data_dir is None:
        data_dir = os.environ.get("FASTMLP_DATA_DIR") or None
    if data_dir is not None:
        directory = _explicit_dir(name, spec, Path(data_dir))
        return directory, [directory]
    searched = [cache_dir() / name, *_machine_dirs(name)]
    for directory in searched:
        if not _missing_files(directory, spec):
            return directory, searched
    return None, searched


def find_dataset_dir(name, data_dir=None) -> Path:
    """Directory holding the dataset's four files (look-up order in the module docstring)."""
    name, spec = _spec(name)
    directory, searched = _locate(name, spec, data_dir)
    if directory is None:
        raise DataError(f"{name}: dataset files not found in {', '.join(map(str, searched))}")
    return directory


# --------------------------------------------------------------------------- loading

def load_dataset(name, data_dir=None, download=True) -> Dataset:
    """Find (or download) and read a dataset; images flattened to (N, 784) uint8."""
    name, spec = _spec(name)
    directory, searched = _locate(name, spec, data_dir)
    if directory is None:
        if not download:
            raise DataError(f"{name}: dataset files not found in "
                            f"{', '.join(map(str, searched))} (download disabled)")
        directory = download_dataset(name, cache_dir())
    paths = {key: file_in(directory, file_name) for key, file_name in spec.files.items()}
    decoded = _decoded_dir(paths)
    arrays = _read_decoded(decoded, paths)
    if arrays is None:
        x_train, y_train = _read_split(paths["x_train"], paths["y_train"], spec)
        x_test, y_test = _read_split(paths["x_test"], paths["y_test"], spec)
        arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        _write_decoded(decoded, arrays)
    return Dataset(name, spec.class_names, **arrays)


# --------------------------------------------------------------------------- decoded copies
# Decompressing the .gz files takes about half a second, a third of `train`'s start-up. After
# the first successful read (all checks passed), the arrays are kept as .npy files in the
# cache, under a key made of the source files' paths, sizes and modification times: a changed
# or replaced file gets a new key, so it is read and checked again.

def _decoded_dir(paths: dict) -> Path | None:
    """Where the decoded copy of these exact files lives (None if a file cannot be stat'ed:
    then it is read, and its problem reported, the usual way)."""
    identity = []
    for key in sorted(paths):
        try:
            stat = os.stat(paths[key])
        except (OSError, TypeError):
            return None
        identity.append(f"{os.path.abspath(paths[key])}:{stat.st_size}:{stat.st_mtime_ns}")
    key = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:24]
    return cache_dir() / "decoded" / key


def _read_decoded(directory: Path | None, paths: dict):
    """The arrays from an earlier read of the same files, or None."""
    if directory is None:
        return None
    try:
        return {key: np.load(directory / f"{key}.npy", allow_pickle=False) for key in paths}
    except (OSError, ValueError):
        return None


def _write_decoded(directory: Path | None, arrays: dict) -> None:
    """Keep the arrays for the next read; a cache that cannot be written is no error."""
    from .files import atomic_writer

    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for key, array in arrays.items():
            with atomic_writer(directory / f"{key}.npy", "wb") as handle:
                np.save(handle, array, allow_pickle=False)
    except OSError:
        pass


def _read_split(images_path: Path, labels_path: Path,
                spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair and check that they belong together and fit `spec`."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != spec.image_shape:
        height, width = spec.image_shape
        raise DataError(f"{images_path}: expected {height}x{width} images, found an IDX array "
                        f"of shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label file, found shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels but {images_path} has "
                        f"{len(images)} images")
    if len(labels) and labels.max() >= spec.num_classes:
        raise DataError(f"{labels_path}: label value {labels.max()} is not a class "
                        f"(expected 0..{spec.num_classes - 1})")
    return images.reshape(len(images), -1), labels


# --------------------------------------------------------------------------- download

def _default_mirrors(spec: DatasetSpec) -> list[str]:
    override = os.environ.get("FASTMLP_MIRROR")
    return ([override] if override else []) + list(spec.mirrors)


def download_dataset(name, cache_dir, mirrors=None) -> Path:
    """Download the missing files into `cache_dir/<name>/`, verified; return that directory.

    Each file goes to a temp file in the target directory, its decompressed SHA-256 is
    checked, then it is moved into place; a failure removes the temp file and tries the
    next mirror. `mirrors` defaults to FASTMLP_MIRROR (if set) then the built-in ones.
    """
    name, spec = _spec(name)
    mirrors = _default_mirrors(spec) if mirrors is None else list(mirrors)
    target = Path(cache_dir) / name
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{target}: cannot create the dataset cache directory ({exc})") from None
    try:
        for file_name in spec.files.values():
            if file_in(target, file_name) is None:
                _download_file(file_name, spec.sha256[file_name], mirrors, target)
    except BaseException:
        if created and not any(target.iterdir()):
            target.rmdir()  # leave nothing behind
        raise
    return target


def _download_file(file_name: str, expected_sha256: str, mirrors: list[str], target: Path) -> None:
    """Fetch one file from the first mirror that serves it with the right checksum."""
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + file_name
        # Same ending as the final name: `.gz` decides how the checksum reads it.
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", suffix=f"-{file_name}", dir=target)
        except OSError as exc:
            raise DataError(f"{target}: cannot write to the dataset cache ({exc})") from None
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s", url)
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
            actual = _sha256(tmp)
            if actual == expected_sha256:
                os.replace(tmp, target / file_name)
                return
            failures.append(f"{url}: checksum mismatch (sha256 of the decompressed bytes "
                            f"{actual[:12]}..., expected {expected_sha256[:12]}...)")
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            failures.append(f"{url}: {exc.reason}")
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            failures.append(f"{url}: {_read_problem(exc)}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    reasons = "; ".join(failures) if failures else "no mirrors configured"
    raise DataError(f"{target / file_name}: download failed: {reasons}")


# --------------------------------------------------------------------------- preparing

def train_val_split(n, val_fraction, seed) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), sorted int64; round(n * val_fraction) for
    validation, chosen by a permutation from np.random.default_rng(seed)."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"validation fraction must be in [0, 1), got {val_fraction}")
    n_val = round(n * val_fraction)
    order = np.random.default_rng(seed).permutation(n)
    return sorted_split(order, n_val)


def sorted_split(order: np.ndarray, n_first: int) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, the first n_first) of a permutation `order` of 0..n-1, each sorted int64:
    read off a mask of the chosen rows, in linear time (no sort)."""
    chosen = np.zeros(len(order), dtype=bool)
    chosen[order[:n_first]] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


@dataclass
class Splits:
    pixels_train: np.ndarray  # uint8 pixels (the kernel scales them as it gathers a batch)
    #                           or float features (used as they are)
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple  # the outputs' names: classes, or targets (regression, multilabel)
    image_shape: tuple | None = None  # (height, width) of image data; None for a table
    task: str = "classification"
    w_train: np.ndarray | None = None  # row weights of each set, or None (unweighted)
    w_val: np.ndarray | None = None
    w_test: np.ndarray | None = None
    preprocessing: object = None  # a table's (preprocess.Preprocessing), kept in model.npz
    # regression: the y above are (y - target_mean) / target_scale, per target, from the
    # training rows (None: as they are); the network learns in those units
    target_mean: np.ndarray | None = None
    target_scale: np.ndarray | None = None

    def layer_sizes(self, hidden_widths) -> tuple:
        """Units per layer: the data's input width, the hidden widths, its outputs."""
        return (self.pixels_train.shape[1],) + tuple(hidden_widths) + (len(self.class_names),)

    @property
    def target_scaling(self):
        """(mean, scale) of the targets' standardisation, or None."""
        return None if self.target_mean is None else (self.target_mean, self.target_scale)


def load_splits(config, own: Dataset | None = None, consume: bool = False) -> Splits:
    """The seeded validation split taken off train; validation and test as floats in [0, 1].
    config: a TrainConfig (dataset, data_dir, val_fraction, seed, dtype). own: the user's
    data (`--data`), already read by owndata.load_own_data; without it, config.dataset.
    consume: the caller drops `own` afterwards, so its float features may be rearranged in
    place (the training rows moved to the front) instead of copied: a large table is not
    held twice."""
    if own is not None:
        dataset, image_shape = own, own.image_shape
    elif getattr(config, "data", None) is not None:
        raise ValueError("config.data is set: pass owndata.load_own_data(config) as `own`")
    else:
        dataset = load_dataset(config.dataset, config.data_dir)
        image_shape = REGISTRY[dataset.name].image_shape
    train_rows, val_rows = train_val_split(len(dataset.y_train), config.val_fraction, config.seed)
    dtype = np.dtype(config.dtype)
    classes = dataset.task == "classification"
    y, y_test = ((dataset.y_train.astype(np.int64), dataset.y_test.astype(np.int64)) if classes
                 else (dataset.y_train, dataset.y_test))
    mean = scale = None
    if dataset.task == "regression" and config.loss in STANDARDISED_LOSSES:
        mean, scale = y[train_rows].mean(axis=0), y[train_rows].std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        y, y_test = (y - mean) / scale, (y_test - mean) / scale
    w = dataset.w_train
    x_val = model_inputs(dataset.x_train[val_rows], dtype)
    if consume and own is not None and dataset.x_train.dtype == dtype:
        x_train, x_test = keep_rows(dataset.x_train, train_rows), dataset.x_test
    else:
        x_train, x_test = dataset.x_train[train_rows], model_inputs(dataset.x_test, dtype)
    return Splits(
        pixels_train=x_train, y_train=y[train_rows], x_val=x_val, y_val=y[val_rows],
        x_test=x_test, y_test=y_test,
        class_names=tuple(dataset.class_names),
        image_shape=image_shape, task=dataset.task,
        w_train=None if w is None else w[train_rows], w_val=None if w is None else w[val_rows],
        w_test=dataset.w_test, preprocessing=dataset.preprocessing, target_mean=mean,
        target_scale=scale)


def keep_rows(x: np.ndarray, rows: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """x[rows] for sorted rows, written over x's first rows (a view of them): each chunk's
    rows come from at or after where they go, so no row is overwritten before it moves."""
    for start in range(0, len(rows), chunk):
        moving = rows[start:start + chunk]
        x[start:start + len(moving)] = x[moving]
    return x[:len(rows)]


# Regression losses trained on standardised targets (poisson's counts keep their scale: its
# log link would only shift the output's bias)
STANDARDISED_LOSSES = ("squared_error", "absolute_error", "huber")


def model_inputs(x, dtype) -> np.ndarray:
    """What the network reads: uint8 pixels scaled to [0, 1], float features as they are;
    a new C-contiguous array of `dtype`. (The training kernel applies the same rule as it
    gathers a batch: kernels.epoch.input_divisor.)"""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return scale_pixels(x, dtype)
    return np.array(x, dtype=dtype, order="C")


def scale_pixels(x_uint8, dtype) -> np.ndarray:
    """uint8 pixels -> a new C-contiguous float array x / 255 in [0, 1]."""
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8:
        raise TypeError(f"scale_pixels expects uint8 pixels, got {x.dtype}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"scale_pixels needs a float dtype, got {dtype}")
    out = np.empty(x.shape, dtype=dtype)  # C order
    np.divide(x, dtype.type(255), out=out, dtype=dtype)
    return out
