"""From a table's columns to the numbers a network reads, fitted on the training rows and
stored in model.npz, so that `evaluate`, `predict` and `export` treat new rows the same.

    fit_preprocessing(table, names, rows, categorical[, workers]) -> Preprocessing
    Preprocessing.transform(table, dtype[, workers])   -> (N, width) features
    plain_features(table, names, dtype)                -> the numbers as they are
                                                          (--no-preprocess)

Each column is one of three kinds, decided from its type in the file:
    number    (integers, floats): standardised, (x - mean) / std of the training rows;
    boolean   (true/false):       0 or 1, not scaled;
    category  (text, and the columns named by --categorical): one-hot over its levels of at
              least MIN_LEVEL_ROWS training rows (the MAX_LEVELS most frequent); the rarer
              levels share one "other" column, which also takes a level never seen in
              training (no "other" column when training had no rare level: then an unseen
              level is all zeros).
A missing cell is imputed (a number: the training mean, so 0 after scaling; a boolean: its
training share of 1s) and gets an indicator column, 1 where missing, for every column with
a missing training cell. The features are laid out as: the numbers and booleans, then the
indicators, then each category's one-hot block (`feature_names` says which is which).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from .errors import DataError

NUMBER, BOOLEAN, CATEGORY = "number", "boolean", "category"
MIN_LEVEL_ROWS = 5  # a rarer level goes into its column's "other"
MAX_LEVELS = 100  # one-hot columns kept per category (the most frequent levels)
ROW_BLOCK = 8192  # rows whose numbers become features at a time (their block stays in cache)
FIT_BLOCK = 1 << 16  # rows of a column whose moments are taken at a time
ID_LIKE_SHARE = 0.5  # a text column with more distinct values than this share of its
#                     filled training rows is an identifier, refused


@dataclass
class ColumnRule:
    """How one input column becomes features."""

    name: str
    kind: str  # NUMBER, BOOLEAN or CATEGORY
    fill: float = 0.0  # a missing number or boolean becomes this
    mean: float = 0.0  # then (value - mean) / scale
    scale: float = 1.0
    indicator: bool = False  # a 0/1 column saying where the cell was missing
    levels: tuple = ()  # a category's one-hot levels
    other: bool = False  # a category's column for its rare and unseen levels


@dataclass
class Preprocessing:
    rules: tuple  # ColumnRule per input column, in the table's order

    @property
    def columns(self) -> list:
        """The input columns the rows must have, in order."""
        return [rule.name for rule in self.rules]

    @property
    def numeric(self) -> list:
        """The rules of the number and boolean columns (the first features, in order)."""
        return [rule for rule in self.rules if rule.kind != CATEGORY]

    @property
    def categories(self) -> list:
        return [rule for rule in self.rules if rule.kind == CATEGORY]

    @property
    def feature_names(self) -> list:
        names = [rule.name for rule in self.numeric]
        names += [f"{rule.name} (missing)" for rule in self.numeric if rule.indicator]
        for rule in self.categories:
            names += [f"{rule.name}={level}" for level in rule.levels]
            names += [f"{rule.name} (other)"] if rule.other else []
            names += [f"{rule.name} (missing)"] if rule.indicator else []
        return names

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def transform(self, table, dtype, workers=None, split=None) -> np.ndarray:
        """The (N, width) features of a Table (fastmlp.tables) holding self.columns, made on
        `workers` threads (None: one per core); their rows in the table's order, or with
        `split` (two sorted arrays of rows that cover the table) its first array's rows,
        then the second's."""
        _check_columns(table, self.columns)
        out = _plain_pages_zeros((table.num_rows, self.width), dtype)
        numeric = self.numeric
        indicator_at, at = [], len(numeric)  # each number's indicator feature, or None
        for rule in numeric:
            indicator_at.append(at if rule.indicator else None)
            at += rule.indicator
        views = [_NumberView.of(table, rule) for rule in numeric]

        def write_block(lo):
            hi = min(lo + ROW_BLOCK, table.num_rows)
            _write_numbers(table, numeric, views, indicator_at, out,
                           _destinations(split, lo, hi), lo, hi)

        blocks = range(0, table.num_rows, ROW_BLOCK)  # disjoint rows: any thread count
        _in_order(write_block, blocks, workers, len(blocks) >= 8)  # gives the same
        offset = at
        if self.categories:
            destination = _destinations(split, 0, table.num_rows)
            for rule in self.categories:
                offset = _one_hot(table, rule, out, destination, offset)
        return out

    def to_json(self) -> str:
        return json.dumps([asdict(rule) for rule in self.rules])

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        return cls(tuple(ColumnRule(**{**rule, "levels": tuple(rule["levels"])})
                         for rule in json.loads(text)))


def fit_preprocessing(table, names, rows, categorical=(), workers=None) -> Preprocessing:
    """The rules for the columns `names` of a Table, from its training rows `rows` (int
    indices) only; the columns fitted on `workers` threads (None: one per core)."""
    _check_columns(table, names)
    chosen = np.zeros(table.num_rows, dtype=bool)
    chosen[rows] = True

    def fit(name):
        kind = _kind(table, name, categorical)
        if kind == CATEGORY:
            return _fit_category(table, name, rows)
        count, fill, spread, missing = _moments(table, name, kind, chosen)
        mean, scale = 0.0, 1.0
        if kind == NUMBER:
            std = float(np.sqrt(spread / count)) if count else 0.0
            mean, scale = fill, std if std > 0 else 1.0
        return ColumnRule(name, kind, fill, mean, scale, missing)

    # threads pay from about a million rows (Zen 4: 160,000 training rows fit in 6 ms on one
    # thread and 8 on two; 4,000,000 in 176 and 103 ms)
    return Preprocessing(tuple(_in_order(fit, names, workers, len(rows) >= 1 << 20)))


def _moments(table, name, kind, chosen) -> tuple:
    """(count, mean, sum of squared deviations, any missing) of a number or boolean
    column's filled cells in the rows `chosen` (a mask), in float64. The column is read
    FIT_BLOCK rows at a time (kernels/columns.py takes each block's moments in one call),
    each block's moments merged into the total's (Chan, Golub and LeVeque's update), so no
    copy of the whole column is made; an infinity anywhere in the column is an error naming
    its line."""
    from .kernels.columns import column_moments

    count, mean, spread, missing = 0, 0.0, 0.0, False
    for lo in range(0, table.num_rows, FIT_BLOCK):
        hi = min(lo + FIT_BLOCK, table.num_rows)
        block = _column_numbers(table, name, kind, lo, hi)
        seen, block_mean, block_spread, gaps, infinite = column_moments(block, chosen[lo:hi])
        if infinite:
            _check_finite(table, block[:, None], [name], lo)  # names its line
        missing = missing or gaps
        if seen:
            total = count + seen
            delta = block_mean - mean
            mean += delta * seen / total
            spread += block_spread + delta * delta * count * seen / total
            count = total
    return count, float(mean), float(spread), bool(missing)


def _plain_pages_zeros(shape, dtype) -> np.ndarray:
    """np.zeros(shape, dtype) in ordinary 4 KiB pages. NumPy asks Linux for transparent huge
    pages for every large array; where the kernel answers that by compacting memory at the
    first write (transparent_hugepage/defrag "madvise", the default), writing a fresh 1 GB
    feature matrix took 1.2-2.9 s against 0.4-0.6 s in plain pages. The setting is
    NumPy's, for the whole process, so it is put back at once."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    advised = multiarray._set_madvise_hugepage(False)
    try:
        return np.zeros(shape, dtype=dtype)
    finally:
        multiarray._set_madvise_hugepage(advised)


def _in_order(function, items, workers, worth_threads: bool) -> list:
    """[function(item) for item in items], on up to `workers` threads (None: one per core)
    when worth_threads: NumPy and pyarrow let go of the GIL in their loops. The results
    come in order, and an error is the first item's in order, as on one thread."""
    workers = min(workers or os.cpu_count() or 1, len(items)) if worth_threads else 1
    if workers <= 1:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def plain_features(table, names, dtype) -> np.ndarray:
    """The columns `names` as numbers, as they are (--no-preprocess): a text or missing cell
    is an error naming its line and column."""
    from .tables import is_number

    _check_columns(table, names)
    out = np.empty((table.num_rows, len(names)), dtype=dtype)
    for j, name in enumerate(names):
        kind = _kind(table, name, ())
        if kind == CATEGORY:
            cells = table.cells(name)
            row = next(i for i, cell in enumerate(cells) if not is_number(cell))
            raise DataError(f"{table.path}: {table.where(row)}, column {name!r}: "
                            f"{str(cells[row])!r} is not a number (--no-preprocess takes "
                            "numbers only)")
        out[:, j] = _numbers(table, name, dtype, kind)
        missing = np.isnan(out[:, j])
        if missing.any():
            raise DataError(f"{table.path}: {table.where(int(np.argmax(missing)))}, column "
                            f"{name!r}: a missing cell (--no-preprocess takes every cell)")
    return out


# ----------------------------------------------------------------------------- columns

def _check_columns(table, names) -> None:
    missing = [name for name in names if name not in table.names]
    if missing:
        raise DataError(f"{table.path}: no column {missing[0]!r} (the model reads "
                        f"{', '.join(map(repr, list(names)[:8]))}{', ...' if len(names) > 8 else ''})")


def _kind(table, name, categorical) -> str:
    """NUMBER, BOOLEAN or CATEGORY from the column's type; a column of dates or of numbers
    and text is an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .tables import NUMBER_PATTERN, mixed_column_error

    column = table.columns.column(name)
    kind_of = column.type
    if name in categorical:
        return CATEGORY
    if pa.types.is_boolean(kind_of):
        return BOOLEAN
    if pa.types.is_integer(kind_of) or pa.types.is_floating(kind_of) or pa.types.is_null(kind_of):
        return NUMBER
    if pa.types.is_string(kind_of) or pa.types.is_large_string(kind_of) \
            or pa.types.is_dictionary(kind_of):
        text = pc.cast(column, pa.string()) if pa.types.is_dictionary(kind_of) else column
        numbers = pc.match_substring_regex(text, NUMBER_PATTERN)
        count, filled = pc.sum(numbers).as_py() or 0, len(text) - text.null_count
        if count and count * 2 > filled:  # mostly numbers: a typo, not a category
            words = pc.and_(pc.invert(numbers), pc.is_valid(text))
            row = int(pc.index(words, True).as_py())
            raise DataError(mixed_column_error(table.path, table.where(row), name,
                                               text[row].as_py()))
        return CATEGORY
    raise DataError(f"{table.path}: column {name!r} holds {kind_of}, not numbers, true/false "
                    f"or text (leave it out with --drop {name})")


def _numbers(table, name, dtype, kind) -> np.ndarray:
    """A number or boolean column as numbers, NaN where missing: a `dtype` array (dtype
    None: in the column's own type, perhaps a read-only view of it); infinities are an
    error."""
    values = _column_numbers(table, name, kind)
    values = values if dtype is None else np.asarray(values, dtype=dtype)
    _check_finite(table, values[:, None], [name], 0)
    return values


def _column_numbers(table, name, kind, lo=0, hi=None) -> np.ndarray:
    """Rows lo..hi (all by default) of a number or boolean column in its own type, NaN
    where missing (perhaps a read-only view of the column); text in it is an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .tables import NUMBER_PATTERN, mixed_column_error

    column = table.columns.column(name)
    if lo > 0 or hi is not None:
        column = column.slice(lo, (table.num_rows if hi is None else hi) - lo)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        numbers = pc.or_(pc.match_substring_regex(column, NUMBER_PATTERN), pc.is_null(column))
        if not pc.all(numbers).as_py():  # text where the model reads numbers
            row = int(pc.index(numbers, False).as_py())
            raise DataError(mixed_column_error(table.path, table.where(lo + row), name,
                                               column[row].as_py()))
        column = pc.cast(pc.utf8_trim_whitespace(column), pa.float64())
    elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        column = pc.cast(column, pa.float32())  # booleans, an empty (null) column
    return column.to_numpy(zero_copy_only=False)


def _check_finite(table, values, names, lo) -> None:
    """values (rows, len(names)) hold no infinity; else an error naming the first (its
    file line: values' row 0 is the table's row lo)."""
    infinite = np.isinf(values)
    if infinite.any():
        row, i = np.argwhere(infinite)[0]
        raise DataError(_infinite_error(table, lo + int(row), names[i]))


def _infinite_error(table, row, name) -> str:
    return f"{table.path}: {table.where(row)}, column {name!r}: an infinite number"


class _NumberView:
    """A number column with every cell filled, read as NumPy views of its chunks' memory (no
    copy of the column); rows(lo, hi) joins the pieces a block of rows spans."""

    def __init__(self, column):
        self.pieces = [chunk.to_numpy(zero_copy_only=True) for chunk in column.chunks]
        self.starts = np.cumsum([0] + [len(piece) for piece in self.pieces])

    @classmethod
    def of(cls, table, rule):
        """The view of the rule's column, or None when it has a missing cell or is not of
        numbers (read a block at a time by _column_numbers)."""
        import pyarrow as pa

        column = table.columns.column(rule.name)
        if column.null_count or not (pa.types.is_integer(column.type) or
                                     pa.types.is_floating(column.type)):
            return None
        return cls(column)

    def rows(self, lo, hi) -> np.ndarray:
        first = int(np.searchsorted(self.starts, lo, side="right")) - 1
        parts = []
        while lo < hi:
            piece, at = self.pieces[first], self.starts[first]
            parts.append(piece[lo - at:hi - at])
            lo, first = self.starts[first + 1], first + 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _destinations(split, lo, hi) -> np.ndarray:
    """The rows of the features that the table's rows lo..hi go to: the same rows, or with
    `split` (Preprocessing.transform) the places of the first array's rows among them, and of
    the second's after all of the first's."""
    if split is None:
        return np.arange(lo, hi)
    rows = np.empty(hi - lo, dtype=np.int64)
    offset = 0
    for part in split:
        start, stop = np.searchsorted(part, [lo, hi])
        rows[part[start:stop] - lo] = np.arange(offset + start, offset + stop)
        offset += len(part)
    return rows


def _write_numbers(table, rules, views, indicator_at, out, destination, lo, hi) -> None:
    """The table's rows lo..hi in out's first len(rules) features, at out's rows
    destination[lo:hi], from the number and boolean rules (views: their _NumberView or
    None): a missing cell gets the rule's fill (and 1 in its indicator feature,
    indicator_at[i], where the rule has one), then (value - mean) / scale
    (kernels/columns.py). A block of rows at a time, a column after another: the block's
    rows of out stay in cache while its columns are written side by side."""
    from .kernels.columns import standardise_column

    rows = destination[lo:hi]
    as_out = out.dtype.type
    infinite = None  # (row in the block, column) of the first infinity, row by row
    for j, (rule, view) in enumerate(zip(rules, views)):
        values = (view.rows(lo, hi) if view is not None else
                  _column_numbers(table, rule.name, rule.kind, lo, hi))
        values = values.astype(out.dtype, copy=False)  # text's float64 to float32, as ever
        at = indicator_at[j]
        row = standardise_column(out, rows, j, values, as_out(rule.mean), as_out(rule.scale),
                                 as_out(rule.fill), -1 if at is None else at)
        if row >= 0 and (infinite is None or row < infinite[0]):
            infinite = (row, rule.name)
    if infinite is not None:
        raise DataError(_infinite_error(table, lo + infinite[0], infinite[1]))


def _fit_category(table, name, rows) -> ColumnRule:
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(table.columns.column(name), pa.string()).take(pa.array(rows))
    missing = text.null_count > 0
    counts = pc.value_counts(text.drop_null())
    levels, tally = counts.field("values").to_pylist(), counts.field("counts").to_numpy()
    filled = len(rows) - text.null_count
    if len(levels) > max(MIN_LEVEL_ROWS, ID_LIKE_SHARE * filled):
        raise DataError(f"{table.path}: column {name!r} looks like an identifier ({len(levels)} "
                        f"different texts in {filled} rows), not a category: leave it out "
                        f"with --drop {name}")
    order = sorted(range(len(levels)), key=lambda i: (-tally[i], levels[i]))
    kept = [levels[i] for i in order if tally[i] >= MIN_LEVEL_ROWS][:MAX_LEVELS]
    return ColumnRule(name, CATEGORY, indicator=missing, levels=tuple(kept),
                      other=len(kept) < len(levels))


def _one_hot(table, rule: ColumnRule, out: np.ndarray, destination, offset: int) -> int:
    """Write the rule's one-hot block (levels, other, missing) from column `offset` of out,
    the table's row i at out's row destination[i]; returns the offset after it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(table.columns.column(rule.name), pa.string())
    index = pc.index_in(text, value_set=pa.array(list(rule.levels), pa.string()))
    found = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
    missing = text.is_null().to_numpy(zero_copy_only=False)
    hit = np.flatnonzero(found >= 0)
    out[destination[hit], offset + found[hit]] = 1
    offset += len(rule.levels)
    if rule.other:
        out[destination[(found < 0) & ~missing], offset] = 1
        offset += 1
    if rule.indicator:
        out[destination[missing], offset] = 1
        offset += 1
    return offset


