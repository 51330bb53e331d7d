"""fastmlp's regression on real tables against scikit-learn's MLPRegressor and
HistGradientBoostingRegressor, each at its defaults, on the same seeded split.

    python bench/real_regression.py --table diabetes --random-state 0
    python bench/real_regression.py --table randhie --random-state 0   # and 1, 2, 3, 4

Tables (both shipped inside registry packages; nothing is downloaded):
    diabetes  scikit-learn's load_diabetes: 442 rows, 10 features, disease progression
    randhie   statsmodels' RAND Health Insurance Experiment: 20,190 rows, 9 features, the
              number of outpatient visits (mdvis); `pip install statsmodels`

fastmlp runs the README's regression command (`fastmlp train --data T.csv --target COL`
with REGRESSION_FLAGS) on a CSV of the training rows, with the test rows as --test-data;
the anchors fit on the same rows. Prints each one's test RMSE and fit seconds.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# the README's regression example, beyond --data and --target
REGRESSION_FLAGS = ["-e", "60", "-nhl", "2", "-sz", "128", "-b", "32", "-o", "adamw", "-lr",
                    "0.001", "-w_d", "0.01", "--lr-schedule", "cosine", "--dropout", "0.1"]


def table(name: str):
    """(features DataFrame, target Series) of a table."""
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        frame = load_diabetes(as_frame=True).frame
        return frame.drop(columns="target"), frame["target"]
    if name == "randhie":
        from statsmodels.datasets import randhie

        frame = randhie.load_pandas().data
        return frame.drop(columns="mdvis"), frame["mdvis"]
    raise SystemExit(f"unknown table {name!r}")


def rmse(truth, predicted) -> float:
    return float(np.sqrt(np.mean((np.asarray(truth) - np.asarray(predicted)) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=("diabetes", "randhie"), default="diabetes")
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args()
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPRegressor

    x, y = table(args.table)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2,
                                                        random_state=args.random_state)
    results = {}
    for name, model in (("MLPRegressor", MLPRegressor(random_state=args.random_state)),
                        ("HistGradientBoostingRegressor",
                         HistGradientBoostingRegressor(random_state=args.random_state))):
        start = time.perf_counter()
        model.fit(x_train.to_numpy(), y_train.to_numpy())
        results[name] = {"rmse": rmse(y_test, model.predict(x_test.to_numpy())),
                         "seconds": time.perf_counter() - start}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        target = y.name
        x_train.assign(**{target: y_train}).to_csv(work / "train.csv", index=False)
        x_test.assign(**{target: y_test}).to_csv(work / "test.csv", index=False)
        command = [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "train",
                   "--data", str(work / "train.csv"), "--test-data", str(work / "test.csv"),
                   "--target", target, *REGRESSION_FLAGS, "--seed", str(args.random_state),
                   "--wandb-mode", "disabled", "--no-plots", "--no-progress",
                   "--output-dir", str(work / "runs")]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        summary = json.loads(next((work / "runs").glob("*/summary.json")).read_text())
        train_seconds = sum(record["train_seconds"] for record in summary["epochs"])
        results["fastmlp"] = {"rmse": summary["test_rmse"], "seconds": seconds,
                              "train_seconds": train_seconds}
    print(f"{args.table}, random state {args.random_state}, {len(x_train)} training rows, "
          f"{len(x_test)} test rows")
    for name, figures in results.items():
        extra = (f" (whole command; {figures['train_seconds']:.1f} s of epochs)"
                 if "train_seconds" in figures else "")
        print(f"  {name:30s} test RMSE {figures['rmse']:.4f}  fit {figures['seconds']:.1f} s"
              f"{extra}")


if __name__ == "__main__":
    main()
