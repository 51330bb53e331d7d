"""Every task end to end through the command line: regression (one target and several),
multilabel and weighted rows, on real tables that scikit-learn ships (diabetes, linnerud,
digits); train, the files a run writes, evaluate, predict, export (onnxruntime), resume."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from sklearn.datasets import load_diabetes, load_digits, load_linnerud

from clirunner import invoke
from fastmlp.display import EpochDisplay
from fastmlp.inference import open_model
from fastmlp.owndata import read_table_inputs

pytestmark = pytest.mark.usefixtures("fastmlp_env")
QUIET = ("--wandb-mode", "disabled", "--no-progress", "--threads", "1")


def write_csv(path: Path, frame) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def diabetes_csv(tmp_path_factory) -> Path:
    """scikit-learn's diabetes table (442 rows, 10 standardised features, target: a measure
    of progression one year on)."""
    frame = load_diabetes(as_frame=True).frame
    return write_csv(tmp_path_factory.mktemp("diabetes") / "diabetes.csv", frame)


def train(output_dir, *flags) -> tuple:
    outcome = invoke("train", *flags, *QUIET, "--output-dir", output_dir)
    assert outcome.code == 0, outcome.err
    runs = [p for p in Path(output_dir).iterdir() if (p / "summary.json").exists()]
    return outcome, max(runs, key=lambda p: p.stat().st_mtime)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


REGRESSION = ("-e", "12", "-nhl", "2", "-sz", "32", "-lr", "0.003", "-b", "16")


@pytest.fixture(scope="module")
def regression_run(diabetes_csv, tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs"), "--data", diabetes_csv, "--target", "target",
                 *REGRESSION)


def test_auto_decides_regression_and_the_run_reports_its_figures(regression_run):
    outcome, run_dir = regression_run
    first = outcome.err.splitlines()[0]
    assert first == ("task: regression (the target holds 214 distinct whole numbers, more than "
                     "50); loss squared_error")
    summary = summary_of(run_dir)
    assert summary["task"] == "regression" and summary["config"]["loss"] == "squared_error"
    assert {"test_loss", "test_rmse", "test_mae", "test_r2"} <= set(summary)
    assert "test_accuracy" not in summary and "confusion_matrix" not in summary
    assert 0.3 < summary["test_r2"] < 1 and 30 < summary["test_rmse"] < 75  # in the data's units
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_loss", "val_rmse", "val_mae", "val_r2"} <= set(record)
    assert "train_accuracy" not in record and "val_accuracy" not in record
    assert " rmse " in outcome.err.splitlines()[-1] and " r2 " in outcome.err.splitlines()[-1]
    assert outcome.out.startswith("test rmse ")
    assert (run_dir / "predicted_vs_true.png").stat().st_size > 10_000
    assert not (run_dir / "confusion_matrix.png").exists()
    assert open_model(run_dir / "model.npz").layout.sizes == (10, 32, 32, 1)


def test_evaluate_predict_and_export_of_a_regression_model(regression_run, diabetes_csv,
                                                           tmp_path):
    _, run_dir = regression_run
    summary = summary_of(run_dir)
    outcome = invoke("evaluate", run_dir / "model.npz", "--plot", tmp_path / "r.png")
    assert outcome.code == 0, outcome.err
    assert f"rmse {summary['test_rmse']:.4f}" in outcome.out and "per target" in outcome.out
    assert (tmp_path / "r.png").exists()

    outcome = invoke("predict", run_dir / "model.npz", diabetes_csv)
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert len(lines) == 442
    name, target, value = lines[0].split("\t")
    assert name.endswith("diabetes.csv[0]") and target == "target" and 25 < float(value) < 350

    model = open_model(run_dir / "model.npz")
    outcome = invoke("export", run_dir / "model.npz", tmp_path / "r.onnx")
    assert outcome.code == 0, outcome.err
    # the graph takes the table's raw columns and standardises them as fastmlp does
    x = load_diabetes().data.astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "r.onnx"),
                                           providers=["CPUExecutionProvider"])
    (values,) = session.run(["values"], {"input": x})
    mine = model.outputs(read_table_inputs(diabetes_csv, model)[1])
    assert values.shape == mine.shape == (442, 1)
    assert np.abs(values - mine).max() / np.abs(mine).max() < 1e-5
    assert float(lines[0].split("\t")[2]) == pytest.approx(float(mine[0, 0]), rel=1e-4)


def test_row_weights_change_the_fit_and_weigh_every_figure(regression_run, tmp_path):
    """--weight-column: the column is no input; the same run with weights trains to other
    numbers, and its test figures are the weighted ones (evaluate recomputes them)."""
    _, unweighted = regression_run
    frame = load_diabetes(as_frame=True).frame
    frame["w"] = np.where(frame["target"] > 200, 3.0, 1.0)
    csv = write_csv(tmp_path / "weighted.csv", frame)
    _, run_dir = train(tmp_path, "--data", csv, "--target", "target", "--weight-column", "w",
                       *REGRESSION)
    weighted, plain = summary_of(run_dir), summary_of(unweighted)
    assert weighted["config"]["weight_column"] == "w"
    assert open_model(run_dir / "model.npz").layout.sizes[0] == 10
    assert weighted["test_loss"] != plain["test_loss"]
    outcome = invoke("evaluate", run_dir / "model.npz", "--no-plot")
    assert f"rmse {weighted['test_rmse']:.4f}" in outcome.out


def test_several_targets_poisson_and_resume(tmp_path, monkeypatch):
    """linnerud: two exercise counts (chin-ups, sit-ups) from three body measures
    (standardised), learnt at once with the Poisson loss; a run interrupted after epoch 2
    and resumed ends as an uninterrupted one."""
    counts, body = load_linnerud(return_X_y=True, as_frame=True)
    frame = ((body - body.mean()) / body.std()).join(counts[["Chins", "Situps"]])
    csv = write_csv(tmp_path / "linnerud.csv",
                    frame.loc[np.tile(np.arange(20), 4)].reset_index(drop=True))
    flags = ("--data", csv, "--target", "Chins", "Situps", "-l", "poisson", "-e", "4",
             "-nhl", "1", "-sz", "8", "-lr", "0.01", "-b", "8", "--test-fraction", "0.25")
    _, reference = train(tmp_path / "reference", *flags)
    summary = summary_of(reference)
    assert summary["task"] == "regression" and summary["class_names"] == ["Chins", "Situps"]
    assert summary["config"]["target"] == ["Chins", "Situps"]

    show = EpochDisplay.epoch_line

    def interrupt(self, record):
        show(self, record)
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochDisplay, "epoch_line", interrupt)
    outcome = invoke("train", *flags, *QUIET, "--output-dir", tmp_path / "resumed")
    assert outcome.code == 130
    monkeypatch.undo()
    command = shlex.split(outcome.err.strip().splitlines()[-1].split("resume with", 1)[1])
    resumed = invoke(*command[1:])
    assert resumed.code == 0, resumed.err
    run_dir = Path(command[-1])
    again = summary_of(run_dir)
    assert {k: again[k] for k in ("test_loss", "test_rmse", "test_r2")} == {
        k: summary[k] for k in ("test_loss", "test_rmse", "test_r2")}
    assert np.array_equal(open_model(run_dir / "model.npz").params,
                          open_model(reference / "model.npz").params)
    outcome = invoke("predict", run_dir / "model.npz", csv)
    values = [float(v) for v in outcome.out.splitlines()[0].split("\t")[2::2]]
    assert len(values) == 2 and all(v > 0 for v in values)  # exp: means of counts


def test_multilabel_from_an_npz(tmp_path):
    """digits as three 0/1 labels each (even, above 4, a multiple of 3): sigmoid outputs,
    binary cross-entropy, F1 per label; predict gives each label's probability; the ONNX
    graph gives the same probabilities and labels."""
    x, digit = load_digits(return_X_y=True)
    y = np.stack([digit % 2 == 0, digit > 4, digit % 3 == 0], axis=1).astype(np.int64)
    x = (x / 16).astype(np.float32)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=x[:1500], y_train=y[:1500], x_test=x[1500:], y_test=y[1500:],
             target_names=np.array(["even", "above 4", "multiple of 3"]))
    outcome, run_dir = train(tmp_path, "--data", npz, "-e", "10", "-nhl", "1", "-sz", "64",
                             "-lr", "0.003")
    assert outcome.err.splitlines()[0] == ("task: multilabel (3 target columns of 0/1); loss "
                                           "binary_cross_entropy")
    summary = summary_of(run_dir)
    assert summary["config"]["monitor"] == "val_f1"
    assert summary["test_f1"] > 0.85 and summary["test_accuracy"] > 0.6
    assert summary["class_names"] == ["even", "above 4", "multiple of 3"]

    outcome = invoke("evaluate", run_dir / "model.npz")
    assert outcome.code == 0 and "per label" in outcome.out and "multiple of 3" in outcome.out
    outcome = invoke("predict", run_dir / "model.npz", npz)
    fields = outcome.out.splitlines()[0].split("\t")
    assert fields[1::2] == ["even", "above 4", "multiple of 3"]
    assert all(0 <= float(p) <= 1 for p in fields[2::2])

    assert invoke("export", run_dir / "model.npz", tmp_path / "m.onnx").code == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "labels"], {"input": x[1500:]})
    mine = open_model(run_dir / "model.npz").outputs(x[1500:])
    assert np.abs(probabilities - mine).max() < 1e-5
    assert np.array_equal(labels, (mine > 0.5).astype(np.int64))


def test_a_chosen_monitor_keeps_its_best_epoch(diabetes_csv, tmp_path):
    """--monitor val_r2 with --keep best: the kept epoch is the one of the highest R^2."""
    _, run_dir = train(tmp_path, "--data", diabetes_csv, "--target", "target", *REGRESSION,
                       "--monitor", "val_r2", "-lr", "0.05")  # a fast rate: R^2 goes up and down
    summary = summary_of(run_dir)
    best = max(summary["epochs"], key=lambda record: record["val_r2"])
    assert summary["kept_epoch"] == best["epoch"]


def test_a_regression_sweep_minimises_a_named_metric(diabetes_csv, tmp_path):
    """A sweep file's metric may be any figure of the data's task, with its goal; the report
    shows the test figure beside it and best_command.txt carries --target."""
    sweep = tmp_path / "diabetes.yaml"
    sweep.write_text("method: random\nmetric: {name: val_rmse, goal: minimize}\nparameters:\n"
                     "  epochs: {value: 3}\n  hidden_size: {values: [8, 16]}\n")
    outcome = invoke("sweep", sweep, "--data", diabetes_csv, "--target", "target", "--count",
                     "2", "--wandb-mode", "disabled", "--output-dir", tmp_path / "out")
    assert outcome.code == 0, outcome.err + outcome.out
    assert "ran 2 trial(s)" in outcome.out and "test_rmse=" in outcome.out
    report = (tmp_path / "out" / "report.txt").read_text()
    assert "val_rmse" in report and "test_rmse" in report
    assert "--target target" in (tmp_path / "out" / "best_command.txt").read_text()
    header = (tmp_path / "out" / "trials.csv").read_text().splitlines()[0].split(",")
    assert "val_rmse" in header and "test_rmse" in header

    sweep.write_text(sweep.read_text().replace("val_rmse, goal: minimize", "val_accuracy"))
    outcome = invoke("sweep", sweep, "--data", diabetes_csv, "--target", "target", "--count",
                     "1", "--wandb-mode", "disabled", "--output-dir", tmp_path / "other")
    assert outcome.code == 1
    assert outcome.err.strip() == (f"error: {sweep}: metric 'val_accuracy': regression runs "
                                   "record train_loss, val_loss, val_rmse, val_mae, val_r2")
    assert not (tmp_path / "other").exists()


def test_evaluate_weighs_the_per_target_figures_like_the_totals(tmp_path):
    """With one target, evaluate's per-target row is the weighted total itself."""
    from fastmlp.inference import evaluate_model

    frame = load_diabetes(as_frame=True).frame
    frame["w"] = np.where(frame["target"] > 200, 3.0, 1.0)
    csv = write_csv(tmp_path / "weighted.csv", frame)
    _, run_dir = train(tmp_path, "--data", csv, "--target", "target", "--weight-column", "w",
                       "-e", "2", "-nhl", "1", "-sz", "8")
    result = evaluate_model(run_dir / "model.npz")
    per_target = result.per_output()
    assert per_target["rmse"] == [pytest.approx(result.figures["rmse"], rel=1e-12)]
    assert per_target["r2"] == [pytest.approx(result.figures["r2"], rel=1e-12)]
