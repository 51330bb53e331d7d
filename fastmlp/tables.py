"""Tables for `--data`, `--test-data` and `predict`: CSV (also .csv.gz, .tsv), Parquet and
Arrow/Feather files, read by pyarrow (typed, multi-threaded).

    read_table(path, delimiter=None, categorical=(), as_read=()) -> Table

CSV: a UTF-8 byte-order mark is ignored; the delimiter is the one of , ; tab | that splits
the header line most often (or `delimiter`); quoted fields; an empty cell, NA, NaN, null,
N/A and the like are missing. The first MiB fixes each column's type: feature columns of
numbers are read as float32 (half the memory of float64), the columns in `as_read`
(targets, weights) of numbers as float64, the columns in `categorical` as text. Every problem is a DataError of
one line naming the file and, for a cell, the file's own line (a Parquet or Arrow file's
row) and column: `Table.where(row)`.
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".feather", ".arrow", ".ipc")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + ARROW_SUFFIXES
DELIMITERS = (",", ";", "\t", "|")
MISSING_CELLS = ("", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "-nan", "null", "NULL",
                 "None")
COLUMNS_AT_ONCE = 8  # a Parquet file's columns decoded together (threads share them)
SAMPLE_BYTES = 1 << 20  # the first MiB decides the delimiter and which columns hold numbers
# a cell that is a number (pyarrow's own float syntax, with the sign and exponent optional)
NUMBER_PATTERN = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|Inf|INF)\s*$"


def table_suffix(path) -> str | None:
    """The table suffix of path (".csv.gz" counts as one), or None for another file."""
    name = Path(path).name.lower()
    return next((s for s in sorted(TABLE_SUFFIXES, key=len, reverse=True)
                 if name.endswith(s)), None)


def is_table(path) -> bool:
    return table_suffix(path) is not None


@dataclass
class Table:
    path: Path
    columns: "pyarrow.Table"
    delimiter: str | None = None  # a CSV's

    @property
    def names(self) -> list:
        return list(self.columns.column_names)

    @property
    def num_rows(self) -> int:
        return self.columns.num_rows

    def __len__(self) -> int:
        return self.num_rows

    def where(self, row: int) -> str:
        """How an error names data row `row` (from 0): a CSV's own line, else `row N`."""
        if self.delimiter is None:
            return f"row {row + 1}"
        return f"line {_csv_line(self.path, self.delimiter, row)}"

    def cells(self, name: str) -> np.ndarray:
        """A column as NumPy: numbers as float64 (missing: NaN), booleans as 0/1 float64,
        anything else as text (missing: "")."""
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self.columns.column(name)
        if pa.types.is_boolean(column.type):
            column = pc.cast(column, pa.float64())
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) \
                or pa.types.is_null(column.type):
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        text = pc.fill_null(pc.cast(column, pa.string()), "")
        return np.asarray(text.to_numpy(zero_copy_only=False), dtype=str)

    def locator(self) -> "Table":
        """The same table without its columns: what `where` needs, no more memory."""
        return Table(self.path, self.columns.select([]), self.delimiter)

    def drop(self, names) -> "Table":
        return Table(self.path, self.columns.drop_columns(list(names)), self.delimiter)


def read_table(path, delimiter=None, categorical=(), as_read=()) -> Table:
    """The table at path (see the module's docstring); an empty table is an error."""
    path = Path(path)
    suffix = table_suffix(path)
    if suffix is None:
        raise DataError(f"{path}: not a table (a .csv, .csv.gz, .tsv, .parquet or .feather "
                        "file)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a table")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if suffix in CSV_SUFFIXES:
        table = _read_csv(path, delimiter, set(categorical), set(as_read))
    else:
        table = _read_columnar(path, suffix in PARQUET_SUFFIXES, set(categorical) | set(as_read))
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows" + (" after the header" if table.delimiter
                                                    else ""))
    return table


# ----------------------------------------------------------------------------- CSV

def _opener(path: Path):
    """open, or gzip.open for a .gz file."""
    return gzip.open if path.name.lower().endswith(".gz") else open


def _open_text(path: Path):
    return _opener(path)(path, "rt", encoding="utf-8-sig", newline="")


def _sample(path: Path) -> bytes:
    """The first SAMPLE_BYTES of the file's text (decompressed), cut after its last
    complete line."""
    try:
        with _opener(path)(path, "rb") as handle:
            head = handle.read(SAMPLE_BYTES)
            complete = handle.read(1) == b""
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.strip():
        raise DataError(f"{path}: empty file (a CSV needs a header row)")
    if not complete and b"\n" in head:
        head = head[:head.rindex(b"\n") + 1]
    return head


def detect_delimiter(header_line: str) -> str:
    """The one of DELIMITERS that splits the header line most often outside quotes (a one-
    column table: ",")."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(path: Path, delimiter, categorical: set, as_read: set) -> Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sample = _sample(path)
    if delimiter is None:
        delimiter = detect_delimiter(sample.split(b"\n", 1)[0].decode("utf-8", "replace"))
    parse = pacsv.ParseOptions(delimiter=delimiter)
    read = pacsv.ReadOptions()
    header = _csv_header(path, delimiter)
    for name in categorical:
        if name not in header:
            raise DataError(f"{path}: --categorical {name!r}: no such column "
                            f"(columns: {_shown(header)})")
    # the sample says which feature columns hold numbers: they are read as float32
    sampled = _arrow_read(path, lambda: pacsv.read_csv(
        io.BytesIO(sample), read_options=read, parse_options=parse,
        convert_options=_convert(None)), delimiter)
    types = {field.name: _column_type(field, categorical, as_read) for field in sampled.schema}
    columns = _arrow_read(path, lambda: pacsv.read_csv(
        path, read_options=read, parse_options=parse, convert_options=_convert(types)),
        delimiter, types)
    return Table(path, columns, delimiter)


def _column_type(field, categorical: set, as_read: set):
    """The type a CSV column is read as, from its type in the sample (every column's type
    is fixed before the file is read)."""
    import pyarrow as pa

    kind = field.type
    if field.name in categorical or pa.types.is_string(kind) or \
            (pa.types.is_null(kind) and field.name in as_read):
        return pa.string()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        # a feature as float32 (half the memory); a target or weight as float64 (an integer
        # column of the sample may hold fractions further on)
        return pa.float64() if field.name in as_read else pa.float32()
    return kind


def _convert(types):
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(column_types=types, null_values=list(MISSING_CELLS),
                                strings_can_be_null=True, quoted_strings_can_be_null=True)


def _csv_header(path: Path, delimiter: str) -> list:
    with _open_text(path) as handle:
        header = next(csv.reader(handle, delimiter=delimiter), [])
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: the column {name!r} appears twice in the header")
        seen.add(name)
    return header


def _arrow_read(path: Path, read, delimiter, types=None):
    """read(), its pyarrow errors said as one line naming the file's line and column."""
    import pyarrow as pa

    try:
        return read()
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0]
        if "CSV parse error" in message:
            raise DataError(f"{path}: {_ragged_line(path, delimiter) or message}") from None
        if "conversion error to float" in message and types:
            column = int(message.split("#", 1)[1].split(":", 1)[0])
            header = _csv_header(path, delimiter)
            raise DataError(_text_in_numbers(path, delimiter, header[column])) from None
        if "UTF8" in message or isinstance(exc, UnicodeDecodeError):
            raise DataError(f"{path}: not UTF-8 text ({message})") from None
        raise DataError(f"{path}: cannot read it as CSV ({message})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None


def _csv_records(path: Path, delimiter: str):
    """(line, fields) of every data record of a CSV (empty lines skipped, as pyarrow does):
    the slow way, only to name the line of a problem."""
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        for fields in reader:
            if fields:
                yield reader.line_num, fields


def _csv_line(path: Path, delimiter: str, row: int) -> int:
    for index, (line, _fields) in enumerate(_csv_records(path, delimiter)):
        if index == row:
            return line
    return row + 2


def _ragged_line(path: Path, delimiter: str) -> str | None:
    width = len(_csv_header(path, delimiter))
    for line, fields in _csv_records(path, delimiter):
        if len(fields) != width:
            return f"line {line} has {len(fields)} fields, the header {width}"
    return None


def _text_in_numbers(path: Path, delimiter: str, column: str) -> str:
    """The error for a column of numbers with a text cell past the first MiB."""
    import re

    index = _csv_header(path, delimiter).index(column)
    number = re.compile(NUMBER_PATTERN)
    for line, fields in _csv_records(path, delimiter):
        cell = fields[index]
        if cell not in MISSING_CELLS and not number.match(cell):
            return mixed_column_error(path, f"line {line}", column, cell)
    return f"{path}: column {column!r} holds numbers and text"


def is_number(text) -> bool:
    """Whether a cell's text reads as a float (Python's syntax)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def mixed_column_error(path, where: str, column: str, cell: str) -> str:
    return (f"{path}: {where}, column {column!r}: {cell!r} in a column of numbers (mark a "
            f"missing cell as empty or NA, or read the column as text with --categorical "
            f"{column})")


# ----------------------------------------------------------------------------- Parquet, Arrow

def _read_columnar(path: Path, parquet: bool, as_read: set) -> Table:
    """A Parquet file read a few columns at a time, or an Arrow/Feather file mapped into
    memory; feature columns of numbers become float32 as they come (the others, `as_read`,
    keep their types)."""
    import pyarrow as pa

    kind = "Parquet" if parquet else "Arrow/Feather"
    try:
        if parquet:
            import pyarrow.parquet as pq

            source = pq.ParquetFile(path)
            names = source.schema_arrow.names

            def read(chosen):  # a row group at a time, its numbers float32 as they come
                groups = [_float32_features(source.read_row_group(group, columns=chosen),
                                            as_read)
                          for group in range(source.num_row_groups)]
                return (pa.concat_tables(groups) if groups else  # no row group: empty
                        _float32_features(source.read(columns=chosen), as_read))
        else:
            import pyarrow.feather as feather

            mapped = feather.read_table(path, memory_map=True)
            names = mapped.column_names

            def read(chosen):
                return _float32_features(mapped.select(chosen), as_read)
        twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if twice is not None:
            raise DataError(f"{path}: the column {twice!r} appears twice")
        columns = {}
        for start in range(0, len(names), COLUMNS_AT_ONCE):
            chunk = read(names[start:start + COLUMNS_AT_ONCE])  # number features float32
            for name in chunk.column_names:
                columns[name] = chunk.column(name)
            del chunk
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable {kind} file "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None
    return Table(path, pa.table(columns) if columns else pa.table({}))


def _float32_features(table, as_read: set):
    """The table with its number columns as float32, but those read as they are."""
    import pyarrow as pa

    for i, name in enumerate(table.column_names):
        column = table.column(i)
        if name not in as_read and column.type != pa.float32() and (
                pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            table = table.set_column(i, name, column.cast(pa.float32()))
    return table


def _shown(names) -> str:
    names = list(names)
    return f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
