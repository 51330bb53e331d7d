"""`fastmlp train --data PATH`: a CSV table, an .npz and a folder of IDX files, and what
follows a run on them (evaluate, predict, resume, export)."""
from __future__ import annotations

import csv
import json
import shlex

import numpy as np
import pytest

from clirunner import invoke, write_idx_files
from fastmlp.display import EpochDisplay

pytestmark = pytest.mark.usefixtures("fastmlp_env")
QUIET = ("--wandb-mode", "disabled", "--no-progress", "--no-plots")


def _table(path, rows, seed):
    """A CSV of 6 features and a text label that depends on them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    labels = np.where(x[:, 0] > 0.5, "cat", np.where(x[:, 1] > 0, "dog", "bird"))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["f1", "f2", "f3", "species", "f4", "f5", "f6"])
        for row, label in zip(x, labels):
            writer.writerow([*np.round(row[:3], 4), label, *np.round(row[3:], 4)])
    return path


def test_csv_with_a_test_file_then_evaluate_and_predict(tmp_path):
    train, test = _table(tmp_path / "train.csv", 800, 0), _table(tmp_path / "test.csv", 200, 1)
    out = tmp_path / "runs"
    outcome = invoke("train", "--data", train, "--test-data", test, "--label-column", "species",
                     "-e", "15", "-nhl", "1", "-sz", "16", "-lr", "0.01", "--output-dir", out,
                     *QUIET)
    assert outcome.code == 0, outcome.err
    run = out / "hl_1_bs_128_ac_ReLU"  # a table trains in batches of 128 unless told
    summary = json.loads((run / "summary.json").read_text())
    assert summary["class_names"] == ["bird", "cat", "dog"]
    assert np.sum(summary["confusion_matrix"]) == 200 and summary["test_accuracy"] > 0.85
    command = shlex.split(summary["train_command"])
    assert command[command.index("--data") + 1] == str(train) and "-d" not in command

    outcome = invoke("evaluate", run / "model.npz", "--no-plot")
    assert outcome.code == 0, outcome.err
    assert "6-16-3 ReLU, trained on" in outcome.out
    assert f"accuracy {summary['test_accuracy']:.4f}" in outcome.out
    assert "test set: 200 rows" in outcome.out and "images" not in outcome.out  # a table

    outcome = invoke("predict", run / "model.npz", test, "-k", "3")
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert len(lines) == 200 and lines[0].startswith(f"{test}[0]\t")
    assert {line.split("\t")[1] for line in lines} <= {"bird", "cat", "dog"}

    assert invoke("export", run / "model.npz", tmp_path / "m.onnx").code == 0


def test_csv_seeded_test_split_and_npz(tmp_path):
    table = _table(tmp_path / "all.csv", 500, 2)
    for out in ("a", "b"):
        outcome = invoke("train", "--data", table, "--label-column", "species", "-e", "1",
                         "-nhl", "0", "--test-fraction", "0.3", "--output-dir", tmp_path / out,
                         *QUIET)
        assert outcome.code == 0, outcome.err
    first, second = (json.loads((tmp_path / out / "hl_0_bs_128_ac_ReLU" / "summary.json")
                                .read_text()) for out in ("a", "b"))
    assert np.sum(first["confusion_matrix"]) == 150
    assert first["confusion_matrix"] == second["confusion_matrix"]  # seeded: the same split

    rng = np.random.default_rng(3)
    x = rng.random((300, 12)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64) + 2 * (x[:, 1] > 0.5)
    np.savez(tmp_path / "d.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:],
             y_test=y[240:], class_names=np.array(["none", "first", "second", "both"]))
    outcome = invoke("train", "--data", tmp_path / "d.npz", "-e", "2", "-nhl", "1", "-sz", "8",
                     "--output-dir", tmp_path / "npz", *QUIET)
    assert outcome.code == 0, outcome.err
    summary = json.loads((tmp_path / "npz" / "hl_1_bs_32_ac_ReLU" / "summary.json").read_text())
    assert summary["class_names"] == ["none", "first", "second", "both"]
    assert summary["num_params"] == 12 * 8 + 8 + 8 * 4 + 4


def test_idx_folder_resume_and_predict(fashion_dir, tmp_path, monkeypatch):
    folder = tmp_path / "kmnist-like"
    folder.mkdir()
    write_idx_files(fashion_dir, folder, 1000, 100)
    out = tmp_path / "runs"
    show = EpochDisplay.epoch_line

    def stop_after_first(self, record):
        show(self, record)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(EpochDisplay, "epoch_line", stop_after_first)
        outcome = invoke("train", "--data", folder, "-e", "2", "-nhl", "1", "-sz", "16",
                         "--output-dir", out, *QUIET)
    assert outcome.code == 130, outcome.err
    run = out / "hl_1_bs_32_ac_ReLU"
    outcome = invoke("train", "--resume", run, "--no-progress", "--no-plots")
    assert outcome.code == 0, outcome.err
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["epochs"]) == 2 and summary["class_names"] == [str(i) for i in range(10)]

    outcome = invoke("predict", run / "model.npz", folder / "t10k-images-idx3-ubyte")
    assert outcome.code == 0, outcome.err
    assert len(outcome.out.splitlines()) == 100


def test_a_sweep_on_your_own_csv(tmp_path):
    """`fastmlp sweep FILE --data my.csv`: every trial trains on the table, and the best
    trial's command (with --data and --label-column) reproduces it."""
    table = _table(tmp_path / "all.csv", 600, 4)
    spec = tmp_path / "grid.yaml"
    spec.write_text("method: grid\nparameters:\n  epochs: {value: 3}\n  num_layers: {value: 1}\n"
                    "  hidden_size: {values: [4, 16]}\n  learning_rate: {value: 0.01}\n")
    out = tmp_path / "out"
    outcome = invoke("sweep", spec, "--data", table, "--label-column", "species",
                     "--output-dir", out, "--wandb-mode", "disabled")
    assert outcome.code == 0, outcome.err
    summaries = [json.loads(path.read_text()) for path in out.glob("trials/*/*/summary.json")]
    assert len(summaries) == 2
    for summary in summaries:
        assert summary["class_names"] == ["bird", "cat", "dog"]
        assert np.sum(summary["confusion_matrix"]) == 120  # the seeded 20 % test split
    assert sorted(s["num_params"] for s in summaries) == [6 * 4 + 4 + 4 * 3 + 3,
                                                          6 * 16 + 16 + 16 * 3 + 3]
    command = (out / "best_command.txt").read_text().split()
    assert command[command.index("--data") + 1] == str(table)
    assert command[command.index("--label-column") + 1] == "species"
    again = invoke(*command[1:], "--output-dir", tmp_path / "again", *QUIET)
    assert again.code == 0, again.err
    best = max(summaries, key=lambda s: s["epochs"][-1]["val_accuracy"])
    rerun, = (tmp_path / "again").glob("*/summary.json")
    assert json.loads(rerun.read_text())["test_accuracy"] == best["test_accuracy"]


def test_auto_task_sees_a_fraction_anywhere_in_the_target():
    """--task auto reads a fraction among the first rows at once, but a target of whole
    numbers with one fraction far past them is still regression."""
    from fastmlp.config import TrainConfig
    from fastmlp.owndata import FRACTION_SAMPLE, decide_task

    auto = TrainConfig(target=("y",))  # as read, before the data decide its task
    whole = np.tile([0.0, 1.0, 2.0], FRACTION_SAMPLE)
    assert decide_task("t.csv", auto, whole) == (
        "classification", "the target holds 3 distinct whole numbers")
    late = whole.copy()
    late[-2] = 1.5
    early = whole.copy()
    early[0] = np.nan  # a missing cell is no fraction
    early[7] = 0.25
    for target in (late, early):
        assert decide_task("t.csv", auto, target) == ("regression", "the target holds fractions")
