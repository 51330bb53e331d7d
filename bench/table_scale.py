"""fastmlp on large numeric tables: read time against pyarrow's own read, peak memory and
epoch time, for a generated CSV and its Parquet twin (issue L, "Scale").

    python bench/table_scale.py [--rows 200000 5000000] [--columns 50] [--epochs 1]
                                [--repeats 1] [--out DIR] [--keep] [--json FILE]

For each --rows size it writes a seeded table of --columns columns (the features x0, x1,
... as float64 rounded to 4 decimals, and a regression target `y`, a function of a few
features plus noise) as a CSV and as a Parquet file of the same Arrow table, then measures,
each in a fresh Python process of its own, so that the peak resident memory (RSS) is that
measurement's alone:

    pyarrow          pyarrow.csv.read_csv / pyarrow.parquet.read_table, then the feature
                     columns copied one by one into a C-ordered float32 (N, features) matrix
    read_table       fastmlp.tables.read_table alone (the file as a typed Arrow table)
    load_own_data    fastmlp.owndata.load_own_data: reading, the preprocessing fitted on the
                     training rows, the test split and the float32 feature matrices
    footprint        a process that only imports numpy, pyarrow, numba and fastmlp's trainer
    training         `python cli.py train --data FILE --target y -e EPOCHS` (no plots, no
                     wandb) under GNU time: the whole command's wall time and peak RSS,
                     the epoch's seconds from its summary.json; and once, the same
                     command on a 1,000-row table: the footprint of a training run
                     (kernels compiled or loaded) without the data

The files are read just after they are written, from the operating system's file cache.
Times are the fastest of --repeats runs. The issue's targets, shown beside the figures:
fastmlp's read of a numeric CSV at most 1.3x pyarrow's read plus the float32 conversion;
Parquet at least 3x faster than the same table as CSV; the peak RSS of training at most the
libraries' footprint plus 3x the float32 feature matrix.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
CLI = REPOSITORY / "cli.py"
TARGET = "y"
CHUNK_ROWS = 250_000  # rows generated and written at a time (about 100 MB of float64)
TINY_ROWS = 1_000  # the table of the training run that measures the footprint of training
READ_TARGET, PARQUET_TARGET, MEMORY_TARGET = 1.3, 3.0, 3.0  # the targets
KINDS = ("footprint", "pyarrow", "read_table", "load_own_data")


# ----------------------------------------------------------------------------- the table

def write_tables(folder: Path, rows: int, columns: int, seed: int = 0) -> dict:
    """A seeded table of `rows` x `columns` (columns - 1 features and TARGET) written as
    folder/table_<rows>.csv and .parquet, CHUNK_ROWS at a time; returns {"csv": path,
    "parquet": path}."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    names = [f"x{j}" for j in range(columns - 1)]
    schema = pa.schema([(name, pa.float64()) for name in names + [TARGET]])
    paths = {"csv": folder / f"table_{rows}.csv", "parquet": folder / f"table_{rows}.parquet"}
    rng = np.random.default_rng([seed, rows])
    with pacsv.CSVWriter(paths["csv"], schema) as csv_writer, \
            pq.ParquetWriter(paths["parquet"], schema) as parquet_writer:
        for start in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - start)
            x = rng.standard_normal((count, len(names))).round(4)
            y = target_of(x) + 0.1 * rng.standard_normal(count)
            chunk = pa.table([*x.T, y.round(4)], schema=schema)
            csv_writer.write_table(chunk)
            parquet_writer.write_table(chunk)
    return paths


def target_of(x: np.ndarray) -> np.ndarray:
    """The regression target's signal: a few features, linear and not."""
    signal = np.sin(x[:, 0]) - x[:, 1 % x.shape[1]]
    if x.shape[1] >= 4:
        signal += 0.5 * x[:, 2] * x[:, 3]
    if x.shape[1] >= 5:
        signal += 0.3 * x[:, 4] ** 2
    return signal


# ----------------------------------------------------------------------------- one measurement

def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (10^6 bytes): Linux's VmHWM, the
    peak of this program alone. (getrusage's ru_maxrss, the fallback elsewhere, also counts
    the parent's memory when the child was started by vfork, as Python's subprocess does.)"""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes / KiB


def import_libraries() -> None:
    """What every reader loads once a process, done before a read is timed: pyarrow's
    modules (the first Parquet read would otherwise import pyarrow.dataset, about half a
    second) and the preprocessing's compiled kernels (the first compiled function a process
    loads starts Numba's compiler, about 0.3 s, which `fastmlp train` pays once whatever it
    reads)."""
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from fastmlp.kernels.columns import column_moments, standardise_column

    ones = np.ones(1, dtype=np.float32)
    column_moments(ones, np.ones(1, dtype=bool))
    standardise_column(np.zeros((1, 1), dtype=np.float32), np.zeros(1, dtype=np.int64), 0,
                       ones, ones[0], ones[0], ones[0], -1)


def measure(kind: str, path: str | None) -> dict:
    """One measurement in this (fresh) process: the libraries are imported first, then only
    the work itself is timed. Returns seconds, the peak RSS and what the work made."""
    if kind == "footprint":
        import numba  # noqa: F401

        import fastmlp.trainer  # noqa: F401
        import_libraries()
        return {"peak_mb": peak_rss_mb()}
    import_libraries()
    if kind == "pyarrow":
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        start = time.perf_counter()
        table = pacsv.read_csv(path) if path.endswith(".csv") else pq.read_table(path)
        read = time.perf_counter()
        names = [name for name in table.column_names if name != TARGET]
        x = np.empty((table.num_rows, len(names)), dtype=np.float32)  # C order
        for j, name in enumerate(names):
            x[:, j] = table.column(name).to_numpy()
        end = time.perf_counter()
        return {"seconds": end - start, "read_seconds": read - start,
                "convert_seconds": end - read, "peak_mb": peak_rss_mb(), "shape": x.shape}
    if kind == "read_table":
        from fastmlp.tables import read_table

        start = time.perf_counter()
        table = read_table(path, as_read=(TARGET,))
        return {"seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb(),
                "shape": (table.num_rows, len(table.names))}
    if kind == "load_own_data":
        from fastmlp.config import TrainConfig
        from fastmlp.owndata import load_own_data

        config = TrainConfig(data=path, target=(TARGET,), wandb_mode="disabled").validated()
        start = time.perf_counter()
        dataset = load_own_data(config)
        return {"seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb(),
                "shape": dataset.x_train.shape, "test_rows": len(dataset.x_test),
                "dtype": str(dataset.x_train.dtype), "task": dataset.task}
    raise SystemExit(f"unknown measurement {kind!r} (one of {', '.join(KINDS)})")


def in_fresh_process(kind: str, path=None, repeats: int = 1) -> dict:
    """measure(kind, path) in a new Python process, `repeats` times: the fastest run's
    figures, with the highest peak RSS of them all."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", kind]
    command += [str(path)] if path is not None else []
    runs = []
    for _ in range(repeats):
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY)
        if done.returncode != 0:
            raise SystemExit(f"the {kind} measurement of {path} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    fastest = min(runs, key=lambda run: run.get("seconds", 0.0))
    return dict(fastest, peak_mb=max(run["peak_mb"] for run in runs))


def training_run(path: Path, output_dir: Path, epochs: int) -> dict:
    """`python cli.py train` on the table, under GNU time (`time -v`, a small process, so
    that the peak RSS it reports is the command's alone): the command's wall time and peak
    RSS, the epochs' seconds from the run directory's summary.json."""
    gnu_time = shutil.which("time")
    if gnu_time is None:
        raise SystemExit("the training runs are measured with GNU time (`time -v`): install it")
    output_dir.mkdir(parents=True, exist_ok=True)
    log, usage = output_dir / "train.log", output_dir / "time.txt"
    command = [gnu_time, "-v", "-o", str(usage), sys.executable, str(CLI), "train",
               "--data", str(path), "--target", TARGET, "-e", str(epochs),
               "--wandb-mode", "disabled", "--no-plots", "--no-progress",
               "--output-dir", str(output_dir)]
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPOSITORY)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"training on {path} failed:\n{log.read_text()[-3000:]}")
    peak_kb = next(int(line.rsplit(":", 1)[1]) for line in usage.read_text().splitlines()
                   if "Maximum resident set size" in line)
    summary = json.loads(next(output_dir.glob("*/summary.json")).read_text())
    seconds = [record["train_seconds"] for record in summary["epochs"]]
    return {"wall_seconds": wall, "peak_mb": peak_kb * 1024 / 1e6,
            "epoch_seconds": float(np.mean(seconds)),
            "compile_seconds": summary["compile_seconds"], "test_rmse": summary.get("test_rmse")}


# ----------------------------------------------------------------------------- one size

def bench_size(folder: Path, rows: int, columns: int, epochs: int, repeats: int,
               footprint: dict, keep: bool) -> dict:
    print(f"\nwriting {rows:,} rows x {columns} columns ...", flush=True)
    start = time.perf_counter()
    paths = write_tables(folder, rows, columns)
    sizes = {kind: path.stat().st_size / 1e6 for kind, path in paths.items()}
    print(f"  {time.perf_counter() - start:.1f} s: CSV {sizes['csv']:,.1f} MB, Parquet "
          f"{sizes['parquet']:,.1f} MB", flush=True)
    result = {"rows": rows, "columns": columns, "file_mb": sizes,
              "matrix_mb": rows * (columns - 1) * 4 / 1e6, "footprint": footprint}
    for kind, path in paths.items():
        figures = {}
        for measurement in KINDS[1:]:
            print(f"  {kind}: {measurement} ...", flush=True)
            figures[measurement] = in_fresh_process(measurement, path, repeats)
        print(f"  {kind}: training ...", flush=True)
        figures["training"] = training_run(path, folder / "runs" / f"{rows}-{kind}", epochs)
        result[kind] = figures
    if not keep:
        for path in paths.values():
            path.unlink()
        shutil.rmtree(folder / "runs", ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- the report

def machine() -> dict:
    """The CPU's name, whether it has AVX-512, the core count, today's date, the versions."""
    import numba
    import pyarrow

    name, avx512 = platform.processor() or platform.machine(), None
    try:
        with open("/proc/cpuinfo") as cpuinfo:  # Linux
            lines = cpuinfo.read().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines
                    if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
        avx512 = "avx512f" in flags
    except (OSError, StopIteration):
        pass
    return {"cpu": name, "avx512f": avx512, "cores": os.cpu_count(),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "python": platform.python_version(), "numpy": np.__version__,
            "pyarrow": pyarrow.__version__, "numba": numba.__version__}


def header(info: dict) -> str:
    avx = {True: "with AVX-512F", False: "no AVX-512F", None: "AVX-512F unknown"}[info["avx512f"]]
    return (f"# fastmlp on large tables\n\n{info['cpu']} ({avx}), {info['cores']} cores; "
            f"{info['date']}; Python {info['python']}, NumPy {info['numpy']}, pyarrow "
            f"{info['pyarrow']}, Numba {info['numba']}")


def size_table(result: dict) -> str:
    """The markdown table of one size: a row per figure, a column per file format."""
    csv, parquet = result["csv"], result["parquet"]
    matrix, imports = result["matrix_mb"], result["footprint"]["imports_mb"]
    trained = result["footprint"]["training_mb"]

    def seconds(figures, kind):
        return figures[kind]["seconds"]

    def row(label, csv_cell, parquet_cell, ratio=""):
        return f"| {label} | {csv_cell} | {parquet_cell} | {ratio} |"

    def over(figures, kind):  # the peak above the footprint, in float32 matrices
        return (figures[kind]["peak_mb"] - imports) / matrix

    lines = [f"## {result['rows']:,} rows x {result['columns']} columns",
             "",
             f"float32 feature matrix (N x {result['columns'] - 1}) {matrix:,.1f} MB; "
             f"libraries' footprint {imports:,.0f} MB (imports), {trained:,.0f} MB (a "
             f"{TINY_ROWS:,}-row training run)",
             "",
             "| | CSV | Parquet | CSV / Parquet |",
             "|---|---:|---:|---:|",
             row("file MB", f"{result['file_mb']['csv']:,.1f}",
                 f"{result['file_mb']['parquet']:,.1f}")]
    for kind, label in (("pyarrow", "pyarrow read + float32 s"),
                        ("read_table", "fastmlp read_table s"),
                        ("load_own_data", "fastmlp load_own_data s")):
        lines.append(row(label, f"{seconds(csv, kind):.3f}", f"{seconds(parquet, kind):.3f}",
                         f"{seconds(csv, kind) / seconds(parquet, kind):.1f}x"
                         + (f" (target >= {PARQUET_TARGET:g}x)" if kind == "load_own_data"
                            else "")))
    lines.append(row("pyarrow: read s + float32 conversion s",
                     f"{csv['pyarrow']['read_seconds']:.3f} + "
                     f"{csv['pyarrow']['convert_seconds']:.3f}",
                     f"{parquet['pyarrow']['read_seconds']:.3f} + "
                     f"{parquet['pyarrow']['convert_seconds']:.3f}"))
    lines.append(row(f"load_own_data / pyarrow (target <= {READ_TARGET:g}x)",
                     f"{seconds(csv, 'load_own_data') / seconds(csv, 'pyarrow'):.2f}x",
                     f"{seconds(parquet, 'load_own_data') / seconds(parquet, 'pyarrow'):.2f}x"))
    for kind, label in (("pyarrow", "peak RSS MB: pyarrow read + float32"),
                        ("read_table", "peak RSS MB: fastmlp read_table"),
                        ("load_own_data", "peak RSS MB: fastmlp load_own_data"),
                        ("training", "peak RSS MB: training run")):
        lines.append(row(label, f"{csv[kind]['peak_mb']:,.0f}", f"{parquet[kind]['peak_mb']:,.0f}"))
    lines.append(row("load_own_data peak - footprint, in matrices",
                     f"{over(csv, 'load_own_data'):.1f}x",
                     f"{over(parquet, 'load_own_data'):.1f}x"))
    lines.append(row(f"training peak - footprint, in matrices (target <= {MEMORY_TARGET:g}x)",
                     f"{over(csv, 'training'):.1f}x", f"{over(parquet, 'training'):.1f}x"))
    lines.append(row(f"training peak - {TINY_ROWS:,}-row run, in matrices",
                     f"{(csv['training']['peak_mb'] - trained) / matrix:.1f}x",
                     f"{(parquet['training']['peak_mb'] - trained) / matrix:.1f}x"))
    for key, label in (("wall_seconds", "training run wall s"),
                       ("epoch_seconds", "epoch s"),
                       ("compile_seconds", "kernels compiled or loaded s")):
        lines.append(row(label, f"{csv['training'][key]:.2f}", f"{parquet['training'][key]:.2f}"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 5_000_000],
                        metavar="N", help="the table sizes to measure, in rows (default: "
                                          "200000 5000000)")
    parser.add_argument("--columns", type=int, default=50,
                        help="columns of each table: the features and the target y "
                             "(default: 50)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs of each training run (default: 1)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each read measurement, each in a fresh process; the "
                             "fastest is reported (default: 1)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="the folder for the generated tables and training runs "
                             "(default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the tables and runs (by default they are deleted)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write every figure to this JSON file")
    parser.add_argument("--one", nargs="+", metavar=("KIND", "PATH"),
                        help=f"internal: one measurement ({', '.join(KINDS)}) in this "
                             "process, printed as JSON")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1] if len(args.one) > 1 else None)))
        return
    if args.columns < 2 or min(args.rows) < 100 or args.epochs < 1 or args.repeats < 1:
        parser.error("--columns needs 2 or more, --rows 100 or more, --epochs and --repeats "
                     "1 or more")

    created = args.out is None
    folder = Path(tempfile.mkdtemp(prefix="fastmlp-table-scale-")) if created else args.out
    folder.mkdir(parents=True, exist_ok=True)
    info = machine()
    try:
        print("footprint: imports, and a training run on a "
              f"{TINY_ROWS:,}-row table ...", flush=True)
        tiny = write_tables(folder, TINY_ROWS, args.columns)
        footprint = {"imports_mb": in_fresh_process("footprint")["peak_mb"],
                     "training_mb": training_run(tiny["csv"], folder / "runs" / "tiny",
                                                 args.epochs)["peak_mb"]}
        results = [bench_size(folder, rows, args.columns, args.epochs, args.repeats,
                              footprint, args.keep) for rows in args.rows]
    finally:
        if not args.keep:
            for name in ("csv", "parquet"):
                (folder / f"table_{TINY_ROWS}.{name}").unlink(missing_ok=True)
            shutil.rmtree(folder / "runs", ignore_errors=True)
            if created:
                shutil.rmtree(folder, ignore_errors=True)
    print()
    print(header(info))
    for result in results:
        print()
        print(size_table(result))
    if args.keep:
        print(f"\nthe tables and runs are kept in {folder}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "sizes": results}, indent=1) + "\n")
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
