"""Your own data for `fastmlp train --data PATH`: a .npz file, a CSV file or a folder of IDX
files. Input width, class count and class names come from the data.

    .npz    arrays x_train (N, ...), y_train (N,), and x_test, y_test (both or neither);
            optional class_names (then y holds class indices 0..K-1)
    .csv    a header row; the label column named by --label-column (default `label`), every
            other column a number; the test set from --test-data (a CSV with the same
            columns) or a seeded --test-fraction of the rows
    folder  the four IDX files of MNIST's layout (train-images-idx3-ubyte, ...; .gz or
            not): EMNIST, KMNIST and the like as they are published

uint8 inputs (pixels) are scaled to [0, 1] like MNIST's; any other numbers are used as they
are. Without class_names, the classes are the distinct labels of the training set, sorted
(numbers as numbers), named by their text. Every problem is a DataError of one line naming
the file.

To add a format: a loader below returning (x_train, y_train, x_test, y_test, class_names,
image_shape) and its suffix in LOADERS.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from .data import FILES, Dataset, file_in, read_idx
from .errors import DataError


def load_own_data(config) -> Dataset:
    """The data at config.data as a Dataset (config: label_column, test_data, test_fraction,
    seed, dtype)."""
    path = Path(config.data)
    if path.is_dir():
        loaded = _load_idx_folder(path)
    elif not path.exists():
        raise DataError(f"{path}: no such file or directory")
    elif path.suffix.lower() in LOADERS:
        loaded = LOADERS[path.suffix.lower()](path, config)
    else:
        raise DataError(f"{path}: not a .npz file, a .csv file or a folder of IDX files")
    x_train, y_train, x_test, y_test, class_names, image_shape = loaded
    if config.test_data is not None and path.suffix.lower() != ".csv":
        raise DataError(f"{config.test_data}: --test-data goes with a CSV --data file; "
                        f"{path.name} holds its own test set")
    for x, y, name in ((x_train, y_train, "training"), (x_test, y_test, "test")):
        if x is not None and len(x) != len(np.asarray(y).reshape(-1)):
            raise DataError(f"{path}: the {name} set has {len(x)} rows of features but "
                            f"{len(np.asarray(y).reshape(-1))} labels")
    if x_test is None:
        x_train, y_train, x_test, y_test = _test_split(path, x_train, y_train,
                                                       config.test_fraction, config.seed)
    n_val = round(len(y_train) * config.val_fraction)
    if n_val < 1 or n_val >= len(y_train):
        raise DataError(f"{path}: {len(y_train)} training rows are too few for a validation "
                        f"split of {config.val_fraction} (--val-fraction)")
    x_train, x_test = (_features(path, x, np.dtype(config.dtype)) for x in (x_train, x_test))
    y_train, y_test, class_names = _labels(path, y_train, y_test, class_names)
    return Dataset(path.name, class_names, x_train, y_train, x_test, y_test,
                   image_shape=image_shape)


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
    names = arrays.get("class_names")
    class_names = None if names is None else tuple(str(name) for name in names.reshape(-1))
    flat = lambda x: None if x is None else x.reshape(len(x), -1)  # noqa: E731
    return (flat(x_train), arrays["y_train"], flat(x_test), arrays.get("y_test"), class_names,
            image_shape)


def _load_csv(path: Path, config):
    header, x_train, y_train = _read_csv(path, config.label_column)
    x_test = y_test = None
    if config.test_data is not None:
        test_header, x_test, y_test = _read_csv(Path(config.test_data), config.label_column)
        if test_header != header:
            raise DataError(f"{config.test_data}: its columns ({len(test_header)} features) "
                            f"differ from {path.name}'s ({len(header)} features): train and "
                            "test need the same columns")
    return x_train, y_train, x_test, y_test, None, None


def _read_csv(path: Path, label_column: str, need_label: bool = True):
    """(feature column names, float64 features, label strings) of a CSV file (labels None
    when the file has no label column and need_label is False)."""
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file (a CSV needs a header row)")
            header = [name.strip() for name in header]
            if label_column not in header and need_label:
                raise DataError(f"{path}: no label column {label_column!r} (columns: "
                                f"{', '.join(header[:8])}{', ...' if len(header) > 8 else ''}; "
                                "choose one with --label-column)")
            where = header.index(label_column) if label_column in header else None
            rows = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, "
                                    f"the header {len(header)}")
                rows.append(row)
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    labels = None
    if where is not None:
        labels = np.array([row.pop(where).strip() for row in rows])
        if (labels == "").any():
            line = int(np.argmax(labels == "")) + 2
            raise DataError(f"{path}: line {line} has an empty {label_column!r}")
    features = [name for i, name in enumerate(header) if i != where]
    if not features:
        raise DataError(f"{path}: no feature columns besides {label_column!r}")
    try:
        x = np.array(rows, dtype=np.float64)
    except ValueError:
        for line, row in enumerate(rows, start=2):
            for column, cell in zip(features, row):
                try:
                    float(cell)
                except ValueError:
                    raise DataError(f"{path}: line {line}, column {column!r}: {cell!r} is not "
                                    "a number") from None
        raise
    return features, x, labels


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
    return flat["x_train"], arrays["y_train"], flat["x_test"], arrays["y_test"], None, shape


LOADERS = {".npz": _load_npz, ".csv": _load_csv}


def read_table_inputs(path, num_inputs: int, label_column: str, dtype):
    """(names, features) of the rows to predict for a model trained on a table: a CSV file
    (its label column, if any, is left out), a .npy array or an .npz (x_test, else x)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a CSV, .npy or .npz file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if suffix == ".csv":
        _, x, _ = _read_csv(path, label_column, need_label=False)
    elif suffix in (".npy", ".npz"):
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
        x = x.reshape(len(x), -1)
    else:
        raise DataError(f"{path}: the model takes rows of {num_inputs} features: give a CSV, "
                        ".npy or .npz file")
    if x.shape[1] != num_inputs:
        raise DataError(f"{path}: rows of {x.shape[1]} features, the model takes {num_inputs}")
    return [f"{path}[{i}]" for i in range(len(x))], _features(path, x, np.dtype(dtype))


# ----------------------------------------------------------------------------- checks

def _test_split(path, x, y, fraction, seed):
    """A seeded share of the rows as the test set (data without one of its own)."""
    n_test = round(len(y) * fraction)
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} rows of features but {len(y)} labels")
    if n_test < 1 or n_test >= len(y):
        raise DataError(f"{path}: {len(y)} rows are too few for a test split of "
                        f"{fraction} (give --test-data, or more rows)")
    order = np.random.default_rng([seed, 2]).permutation(len(y))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return x[train], y[train], x[test], y[test]


def _features(path, x, dtype) -> np.ndarray:
    """uint8 pixels as they are (scaled in the kernel); other numbers as `dtype`."""
    if len(x) == 0:
        raise DataError(f"{path}: no rows of data")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    x = np.array(x, dtype=dtype, order="C")
    if not np.isfinite(x).all():
        row, column = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{path}: the features hold NaN or infinite values (first at row "
                        f"{row}, column {column})")
    return x


def _labels(path, y_train, y_test, class_names):
    """(int64 class indices of train and test, class names)."""
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
