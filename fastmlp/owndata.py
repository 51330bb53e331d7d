"""Your own data for `fastmlp train --data PATH`: a table, a .npz file or a folder of IDX
files. Input width, the task, the classes or targets and their names come from the data.

    table   a CSV (.csv.gz, .tsv), Parquet or Feather file read by tables.py; the target
            column(s) named by --target (default: --label-column, `label`), an optional
            --weight-column, --drop columns left out, every other column an input, made
            into numbers by preprocess.py (fitted on the training rows; --no-preprocess:
            numbers as they are); the test set from --test-data (a table with the same
            columns) or a seeded --test-fraction of the rows
    .npz    arrays x_train (N, ...), y_train (N,) or (N, T), and x_test, y_test (both or
            neither); optional class_names (then y holds class indices 0..K-1),
            target_names (regression, multilabel), w_train and w_test (row weights)
    folder  the four IDX files of MNIST's layout (train-images-idx3-ubyte, ...; .gz or
            not): EMNIST, KMNIST and the like as they are published

The task (--task auto, decide_task): classification for text or few distinct whole
numbers in one target column, multilabel for several columns of 0/1, regression for other
numbers. uint8 arrays (pixels) are scaled to [0, 1] like MNIST's; other arrays are used as
they are. Without class_names, the classes are the distinct labels of the training set,
sorted (numbers as numbers), named by their text. Every problem is a DataError of one line
naming the file (and, for a table, its line or row and column).

To add a format: a table format in tables.py; another kind of file, a loader below
returning a Loaded and its suffix in LOADERS.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import (FILES, Dataset, file_in, keep_rows, read_idx, sorted_split,
                   train_val_split)
from .errors import DataError
from .preprocess import fit_preprocessing, plain_features
from .tables import Table, is_number, is_table, read_table
from .kernels.interface import LOSS_TASK

MAX_AUTO_CLASSES = 50  # --task auto: more distinct whole numbers than this are a quantity
FRACTION_SAMPLE = 1000  # --task auto: a fraction among a target's first rows settles it


@dataclass
class Part:
    """One set (training or test) as a loader reads it: features (for a table: its Table of
    feature columns, made into numbers once the training rows are known), targets (N,) or
    (N, T), row weights or None, and for a table the file each row came from and its row
    there (for errors)."""

    x: object
    y: np.ndarray
    weights: np.ndarray | None = None
    source: object = None  # the tables.Table the rows were read from
    rows: np.ndarray | None = None  # each row's index in source
    arranged: bool = False  # x holds the test split's training rows, then its test rows

    def where(self, path, row: int) -> str:
        """How an error names row `row`: its file (`path` unless read from a table) and
        there its line (a CSV's), or its row."""
        if self.source is None:
            return f"{path}: row {row}"
        return f"{self.source.path}: {self.source.where(int(self.rows[row]))}"


@dataclass
class Loaded:
    train: Part
    test: Part | None
    class_names: tuple | None  # given: y holds class indices 0..K-1
    target_names: tuple | None  # the targets' names (a CSV's target columns)
    image_shape: tuple | None


def load_own_data(config, preprocessing=None) -> Dataset:
    """The data at config.data as a Dataset (config: target or label_column, weight_column,
    task, loss, test_data, test_fraction, val_fraction, seed, dtype, and for a table
    delimiter, categorical, drop, preprocess), its task decided (Dataset.task,
    Dataset.task_reason). A table's preprocessing is fitted on its training rows, or is
    `preprocessing` when given (a model's)."""
    path = Path(config.data)
    if path.is_dir():
        loaded = _load_idx_folder(path)
    elif not path.exists():
        raise DataError(f"{path}: no such file or directory")
    elif is_table(path):
        loaded = _load_table(path, config)
    elif path.suffix.lower() in LOADERS:
        loaded = LOADERS[path.suffix.lower()](path, config)
    else:
        raise DataError(f"{path}: not a table (.csv, .csv.gz, .tsv, .parquet, .feather), an "
                        ".npz file or a folder of IDX files")
    if config.test_data is not None and not is_table(path):
        raise DataError(f"{config.test_data}: --test-data goes with a table --data file; "
                        f"{path.name} holds its own test set")
    for part, name in ((loaded.train, "training"), (loaded.test, "test")):
        if part is not None and len(part.x) != len(part.y):
            raise DataError(f"{path}: the {name} set has {len(part.x)} rows of features but "
                            f"{len(part.y)} labels")
        if part is not None and part.weights is not None and len(part.weights) != len(part.y):
            raise DataError(f"{path}: the {name} set has {len(part.y)} rows but "
                            f"{len(part.weights)} weights")
    # targets and weights are checked before the test split: an error names the first bad
    # line of the file
    task, reason = decide_task(path, config, loaded.train.y)
    parts = [part for part in (loaded.train, loaded.test) if part is not None]
    for part, name in zip(parts, ("training", "test")):
        part.weights = _weights(path, part, config.weight_column)
        if task != "classification":
            part.y = _targets(path, part, task, config.loss, name)
    split = None  # (training rows, test rows) of data without a test set of its own
    if loaded.test is None:
        split = _split_rows(path, len(loaded.train.y), config.test_fraction, config.seed)
    if isinstance(loaded.train.x, Table):  # a table: its columns become numbers now
        preprocessing = _table_features(config, loaded, preprocessing, split)
    train, test = loaded.train, loaded.test
    if test is None:
        train, test = _test_split(train, *split)
    n_val = round(len(train.y) * config.val_fraction)
    if n_val < 1 or n_val >= len(train.y):
        raise DataError(f"{path}: {len(train.y)} training rows are too few for a validation "
                        f"split of {config.val_fraction} (--val-fraction)")
    dtype = np.dtype(config.dtype)
    x_train, x_test = (_features(path, part.x, dtype, checked=part.source is not None)
                       for part in (train, test))
    w_train, w_test = train.weights, test.weights
    if task == "classification":
        y_train, y_test, names = _labels(path, train.y, test.y, loaded.class_names)
    else:
        y_train, y_test = train.y, test.y
        if task == "regression" and (y_train.max(axis=0) == y_train.min(axis=0)).any():
            raise DataError(f"{path}: a training target is constant: there is nothing to "
                            "learn")
        names = _target_names(loaded.target_names, y_train.shape[1])
        if task == "multilabel":
            _every_label_seen(path, y_train, names)
    return Dataset(path.name, names, x_train, y_train, x_test, y_test,
                   image_shape=loaded.image_shape, task=task, task_reason=reason,
                   w_train=w_train, w_test=w_test, preprocessing=preprocessing)


def decide_task(path, config, y) -> tuple:
    """(task, why) for targets y as read: --task when given (or the task of a --loss);
    else classification for text or at most MAX_AUTO_CLASSES distinct whole numbers in one
    column, multilabel for several columns all 0/1, regression for other numbers."""
    if config.task != "auto":
        return config.task, f"--task {config.task}"
    if config.loss is not None:
        return LOSS_TASK[config.loss], f"the loss {config.loss} is for {LOSS_TASK[config.loss]}"
    y = np.asarray(y)
    columns = 1 if y.ndim == 1 else y.shape[1]
    numbers = _as_numbers(y, copy=False)  # only read here
    if numbers is None:
        if columns > 1:
            raise DataError(f"{path}: {columns} target columns hold text: several targets are "
                            "numbers (regression) or 0/1 labels (multilabel)")
        return "classification", "the target holds text"
    if columns == 1 and (_has_fraction(numbers[:FRACTION_SAMPLE]) or _has_fraction(numbers)):
        return "regression", "the target holds fractions"
    finite = numbers[np.isfinite(numbers)]
    if columns > 1:
        if np.isin(finite, (0.0, 1.0)).all():
            return "multilabel", f"{columns} target columns of 0/1"
        return "regression", f"{columns} target columns of numbers"
    distinct = len(np.unique(finite))  # (a sort: only for whole numbers)
    if distinct <= MAX_AUTO_CLASSES:
        return "classification", f"the target holds {distinct} distinct whole numbers"
    return "regression", (f"the target holds {distinct} distinct whole numbers, more than "
                          f"{MAX_AUTO_CLASSES}")


def _has_fraction(values: np.ndarray) -> bool:
    """Whether a finite value of `values` is not a whole number (no copy of the values)."""
    return bool((np.isfinite(values) & (values != np.round(values))).any())


def _as_numbers(y: np.ndarray, copy=True):
    """y as float64 (y itself when it is float64 and not `copy`), or None when any cell is
    not a number."""
    if y.dtype.kind in "biuf":
        return y.astype(np.float64, copy=copy)
    try:
        return np.char.strip(y.astype(str)).astype(np.float64)
    except ValueError:
        return None


def _targets(path, part: Part, task: str, loss, name: str) -> np.ndarray:
    """The float64 targets (N, T) of regression or multilabel, each checked (name: the
    set's, for errors)."""
    y = part.y.reshape(len(part.y), -1)
    numbers = _as_numbers(y)
    if numbers is None:
        cells = np.char.strip(y.astype(str))
        for row, column in np.ndindex(*cells.shape):
            try:
                float(cells[row, column])
            except ValueError:
                raise DataError(f"{part.where(path, row)}: the {name} target "
                                f"{str(cells[row, column])!r} is not a number ({task} learns "
                                "numbers)") from None
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{part.where(path, row)}: the {name} target is NaN or infinite")
    if task == "multilabel" and not np.isin(numbers, (0.0, 1.0)).all():
        row = int(np.argwhere(~np.isin(numbers, (0.0, 1.0)))[0][0])
        raise DataError(f"{part.where(path, row)}: multilabel targets are 0 or 1")
    if task == "regression" and loss == "poisson" and (numbers < 0).any():
        row = int(np.argwhere(numbers < 0)[0][0])
        raise DataError(f"{part.where(path, row)}: a negative target; the poisson loss "
                        "learns counts (>= 0)")
    return numbers


def _every_label_seen(path, y_train, names) -> None:
    never = ~(y_train > 0.5).any(axis=0)
    if never.any():
        raise DataError(f"{path}: the label {names[int(np.argmax(never))]!r} is never 1 in the "
                        "training set: it cannot be learnt")


def _target_names(names, count: int) -> tuple:
    if names is not None and len(names) == count:
        return tuple(names)
    return ("target",) if count == 1 else tuple(f"target_{i}" for i in range(count))


def _weights(path, part: Part, column) -> np.ndarray | None:
    """A set's row weights as float64, each finite and >= 0, not all 0 (None: unweighted)."""
    if part.weights is None:
        return None
    label = f"the weight column {column!r}" if column else "the weights"
    weights = _as_numbers(np.asarray(part.weights))
    if weights is None:
        cells = np.char.strip(np.asarray(part.weights).astype(str))
        row = next(i for i, cell in enumerate(cells) if not is_number(cell))
        raise DataError(f"{part.where(path, row)}: {label} holds {str(cells[row])!r}, not a number")
    weights = weights.reshape(-1)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{part.where(path, row)}: {label}: {weights[row]} (weights are "
                        "finite numbers >= 0)")
    if weights.sum() <= 0:
        raise DataError(f"{path}: {label}: every weight is 0")
    return weights


# ----------------------------------------------------------------------------- formats

def _load_npz(path: Path, config):
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not hasattr(stored, "files"):
                raise DataError(f"{path}: a bare .npy array, not an .npz archive")
            arrays = {key: stored[key] for key in stored.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise DataError(f"{path}: no array {' or '.join(missing)} (it holds "
                        f"{', '.join(sorted(arrays)) or 'nothing'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test go together (it has only "
                        f"{'x_test' if 'x_test' in arrays else 'y_test'})")
    for key in ("x_train", "x_test"):
        if key in arrays and (arrays[key].ndim < 2 or arrays[key].dtype.kind not in "biuf"):
            raise DataError(f"{path}: {key} must be a numeric array of rows (N, features), "
                            f"found {arrays[key].dtype} {list(arrays[key].shape)}")
    x_train, x_test = arrays["x_train"], arrays.get("x_test")
    image_shape = x_train.shape[1:] if x_train.ndim == 3 else None
    if x_test is not None and x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{path}: x_test rows are {list(x_test.shape[1:])}, x_train rows "
                        f"{list(x_train.shape[1:])}: train and test need the same width")
    names = {key: None if arrays.get(key) is None
             else tuple(str(name) for name in arrays[key].reshape(-1))
             for key in ("class_names", "target_names")}
    if ("w_test" in arrays) and "x_test" not in arrays:
        raise DataError(f"{path}: w_test goes with x_test and y_test")

    def part(x, y, weights):
        if x is None:
            return None
        return Part(x.reshape(len(x), -1), y if y.ndim <= 1 else y.reshape(len(y), -1), weights)

    return Loaded(part(x_train, arrays["y_train"], arrays.get("w_train")),
                  part(x_test, arrays.get("y_test"), arrays.get("w_test")), names["class_names"],
                  names["target_names"], image_shape)


def target_columns(config) -> list:
    """A table's columns to learn: --target, else --label-column."""
    return list(config.target) if config.target else [config.label_column]


def left_out_columns(config) -> list:
    """A table's columns that are not inputs: the targets, the weights, --drop."""
    weight = [config.weight_column] if config.weight_column else []
    return target_columns(config) + weight + list(config.drop or ())


def _load_table(path: Path, config):
    targets = target_columns(config)
    train = _read_part(path, config, targets)
    test = None
    if config.test_data is not None:
        test = _read_part(Path(config.test_data), config, targets)
        if test.x.names != train.x.names:
            raise DataError(f"{config.test_data}: its columns ({_shown(test.x.names)}) differ "
                            f"from {path.name}'s ({_shown(train.x.names)}): train and test "
                            "need the same columns")
    return Loaded(train, test, None, tuple(targets), None)


def _read_part(path: Path, config, targets: list) -> Part:
    """A table as a Part: its feature columns (a Table), the targets' cells (N,) for one
    column or (N, T), the weight column's or None."""
    weight = config.weight_column
    table = read_table(path, config.delimiter, config.categorical or (),
                       targets + ([weight] if weight else []))
    shown = _shown(table.names)
    missing = [name for name in targets if name not in table.names]
    if missing:
        what = "label column" if len(targets) == 1 else "target column"
        raise DataError(f"{path}: no {what} {missing[0]!r} (columns: {shown}; choose with "
                        "--target or --label-column)")
    for name, flag in [(weight, "weight column")] + [(n, "--drop column") for n in
                                                     config.drop or ()]:
        if name is not None and name not in table.names:
            raise DataError(f"{path}: no {flag} {name!r} (columns: {shown})")
    cells = [table.cells(name) for name in targets]
    for name, column in zip(targets, cells):
        empty = (column == "") if column.dtype.kind == "U" else np.isnan(column)
        if empty.any():
            raise DataError(f"{path}: {table.where(int(np.argmax(empty)))} has an empty "
                            f"{name!r}")
    y = cells[0] if len(cells) == 1 else np.stack(cells, axis=1)
    weights = table.cells(weight) if weight else None
    left_out = left_out_columns(config)
    features = table.drop(name for name in table.names if name in left_out)
    if not features.names:
        raise DataError(f"{path}: no feature columns besides {', '.join(map(repr, left_out))}")
    return Part(features, y, weights, table, np.arange(table.num_rows))


def _table_features(config, loaded: Loaded, preprocessing, split):
    """The parts' Tables made into feature arrays, in place, by `preprocessing`, or by one
    fitted on the training rows (those the test split, `split`, and the validation split
    will leave); without it (--no-preprocess) the numbers as they are. Returns the
    preprocessing used."""
    train, test = loaded.train, loaded.test
    names, dtype = train.x.names, np.dtype(config.dtype)
    if preprocessing is None and config.preprocess:
        rows = np.arange(len(train.y)) if split is None else split[0]
        fitting = rows[train_val_split(len(rows), config.val_fraction, config.seed)[0]]
        preprocessing = fit_preprocessing(train.x, names, fitting, config.categorical or (),
                                          config.threads)
    for part in (train, test):
        if part is None:
            continue
        if preprocessing is None:
            part.x = plain_features(part.x, names, dtype)
        elif part is train and split is not None:  # its features come as [training rows,
            # test rows], so that the test split takes two views (_test_split), no copy
            part.x = preprocessing.transform(part.x, dtype, config.threads, split=split)
            part.arranged = True
        else:
            part.x = preprocessing.transform(part.x, dtype, config.threads)
        part.source = part.source.locator()  # the columns' memory goes
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # back to the system, not kept by pyarrow
    return preprocessing


def _shown(names) -> str:
    return f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"


def _load_idx_folder(path: Path):
    found = {key: file_in(path, name) for key, name in FILES.items()}
    missing = [FILES[key].removesuffix(".gz") for key, file in found.items() if file is None]
    if missing:
        raise DataError(f"{path}: not a folder of IDX files (no {', '.join(missing)}[.gz])")
    arrays = {key: read_idx(file) for key, file in found.items()}
    for images, labels in (("x_train", "y_train"), ("x_test", "y_test")):
        if arrays[images].ndim != 3:
            raise DataError(f"{found[images]}: expected an IDX images file (3 dimensions), "
                            f"found shape {arrays[images].shape}")
        if arrays[labels].ndim != 1:
            raise DataError(f"{found[labels]}: expected an IDX label file, found shape "
                            f"{arrays[labels].shape}")
    if arrays["x_test"].shape[1:] != arrays["x_train"].shape[1:]:
        raise DataError(f"{found['x_test']}: {arrays['x_test'].shape[1:]} images, the "
                        f"training images are {arrays['x_train'].shape[1:]}: train and test "
                        "need the same width")
    shape = arrays["x_train"].shape[1:]
    flat = {key: arrays[key].reshape(len(arrays[key]), -1) for key in ("x_train", "x_test")}
    return Loaded(Part(flat["x_train"], arrays["y_train"]), Part(flat["x_test"], arrays["y_test"]),
                  None, None, shape)


LOADERS = {".npz": _load_npz}


def read_table_inputs(path, model):
    """(names, features) of the rows to predict for a model (inference.Model) trained on a
    table: a table file, made into the inputs as in training (its preprocessing; the
    targets, weights and any column it does not read are left out), or a .npy array or an
    .npz (x_test, else x) of the model's number columns."""
    path = Path(path)
    settings, preprocessing = model.settings, model.preprocessing
    dtype, num_inputs = np.dtype(model.params.dtype), model.layout.sizes[0]
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a table, .npy or .npz file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if is_table(path):
        categorical = [rule.name for rule in preprocessing.categories] if preprocessing else ()
        table = read_table(path, settings.delimiter, categorical)
        if preprocessing is None:  # numbers as they are: every column but the left-out ones
            left_out = left_out_columns(settings)
            x = plain_features(table, [n for n in table.names if n not in left_out], dtype)
        else:
            x = preprocessing.transform(table, dtype)
    elif suffix in (".npy", ".npz"):
        x = _read_array(path)
        if preprocessing is not None:  # the raw number columns, made into the inputs
            x = _array_inputs(path, x, preprocessing, dtype)
    else:
        raise DataError(f"{path}: the model reads a table's rows: give a table (.csv, .parquet, "
                        ".feather), .npy or .npz file")
    if x.shape[1] != num_inputs:
        raise DataError(f"{path}: rows of {x.shape[1]} features, the model takes {num_inputs}")
    return [f"{path}[{i}]" for i in range(len(x))], _features(path, x, dtype)


def _read_array(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as stored:  # an .npy array is no context
            x = stored[next((k for k in ("x_test", "x") if k in stored.files), "x")]
    except (AttributeError, TypeError):
        x = np.load(path, allow_pickle=False)
    except KeyError:
        raise DataError(f"{path}: no array x_test or x in it") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable NumPy file ({exc})") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: holds {x.dtype}, not numbers")
    return x.reshape(len(x), -1)


def _array_inputs(path: Path, x: np.ndarray, preprocessing, dtype) -> np.ndarray:
    """An array of a preprocessed model's raw columns (all numbers) made into its inputs."""
    import pyarrow as pa

    if preprocessing.categories:
        raise DataError(f"{path}: the model reads text columns "
                        f"({_shown([rule.name for rule in preprocessing.categories])}): give "
                        "its rows as a table")
    names = preprocessing.columns
    if x.shape[1] != len(names):
        raise DataError(f"{path}: rows of {x.shape[1]} numbers, the model reads {len(names)} "
                        f"columns ({_shown(names)})")
    columns = pa.table({name: x[:, j].astype(np.float64) for j, name in enumerate(names)})
    return preprocessing.transform(Table(path, columns), dtype)


# ----------------------------------------------------------------------------- checks

def _split_rows(path, n: int, fraction, seed) -> tuple:
    """(training rows, test rows), sorted: a seeded share of n rows as the test set."""
    n_test = round(n * fraction)
    if n_test < 1 or n_test >= n:
        raise DataError(f"{path}: {n} rows are too few for a test split of "
                        f"{fraction} (give --test-data, or more rows)")
    return sorted_split(np.random.default_rng([seed, 2]).permutation(n), n_test)


def _test_split(part: Part, train_rows, test_rows):
    """(train, test) of data without a test set of its own (_split_rows' rows). Features
    already arranged as [training rows, test rows] (part.arranged) become two views; other
    features have their training rows moved to the front in place: a large table is not
    held twice."""
    if part.arranged:
        x_train, x_test = part.x[:len(train_rows)], part.x[len(train_rows):]
    else:
        x_test = part.x[test_rows]
        x_train = keep_rows(part.x, train_rows)
    train, test = (Part(x, part.y[rows], None if part.weights is None else part.weights[rows],
                        part.source, None if part.rows is None else part.rows[rows])
                   for x, rows in ((x_train, train_rows), (x_test, test_rows)))
    return train, test


def _features(path, x, dtype, checked=False) -> np.ndarray:
    """uint8 pixels as they are (scaled in the kernel); other numbers as `dtype`, each
    checked to be finite (unless `checked`: a table's, made by preprocess.py)."""
    if len(x) == 0:
        raise DataError(f"{path}: no rows of data")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    x = np.ascontiguousarray(x, dtype=dtype)  # a table's features are already: no copy
    if not checked and not np.isfinite(x).all():
        row, column = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{path}: the features hold NaN or infinite values (first at row "
                        f"{row}, column {column})")
    return x


def _labels(path, y_train, y_test, class_names):
    """(int64 class indices of train and test, class names)."""
    if np.asarray(y_train).ndim > 1 and np.asarray(y_train).shape[1] > 1:
        raise DataError(f"{path}: classification learns one target column, the data has "
                        f"{np.asarray(y_train).shape[1]} (--task multilabel or regression)")
    y_train, y_test = np.asarray(y_train).reshape(-1), np.asarray(y_test).reshape(-1)
    for y in (y_train, y_test):
        if y.dtype.kind not in "iuUSb" and not (y.dtype.kind == "f" and
                                               np.isfinite(y).all() and (y == y.round()).all()):
            raise DataError(f"{path}: labels must be whole numbers or text, found {y.dtype}")
    if class_names is not None:
        if y_train.dtype.kind not in "iu" or y_test.dtype.kind not in "iu":
            raise DataError(f"{path}: with class_names, y_train and y_test hold class "
                            "indices (whole numbers)")
        classes = np.arange(len(class_names))
    else:
        classes = _sorted_classes(np.unique(y_train))
        class_names = tuple(_name(c) for c in classes)
    if len(classes) < 2:
        raise DataError(f"{path}: the training set holds one class only "
                        f"({class_names[0] if class_names else '?'}); a classifier needs two "
                        "or more")
    encoded = []
    for name, y in (("training", y_train), ("test", y_test)):
        labels = _as_classes(y, classes)
        lookup = {value: i for i, value in enumerate(classes.tolist())}
        index = np.fromiter((lookup.get(value, -1) for value in labels.tolist()), np.int64,
                            len(labels))
        unknown = index < 0
        if unknown.any():
            raise DataError(f"{path}: {name} label {_name(labels[unknown][0])!r} is not a class "
                            f"of the training set ({', '.join(class_names[:10])}"
                            f"{', ...' if len(class_names) > 10 else ''})")
        encoded.append(index.astype(np.int64))
    return encoded[0], encoded[1], tuple(class_names)


def _sorted_classes(values: np.ndarray) -> np.ndarray:
    """Text labels that are all whole numbers sort as numbers ("2" before "10")."""
    if values.dtype.kind in "US":
        try:
            numbers = np.array([int(v) for v in values])
        except ValueError:
            return values
        return values[np.argsort(numbers, kind="stable")]
    return values


def _as_classes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """y in the type of `classes` (text labels compare as text)."""
    if classes.dtype.kind in "US":
        return y.astype(str)
    return y.astype(classes.dtype) if y.dtype.kind in "iuf" else y


def _name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
