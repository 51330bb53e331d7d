"""Checkpoints and `fastmlp train --resume`: an interrupted run, resumed, ends exactly like an
uninterrupted run with the same seed; Ctrl-C (a real SIGINT) saves and names the command.

Real data (a 2,000-image slice of Fashion-MNIST, so epochs take milliseconds), real kernels,
in-process `cli.main` calls except the one SIGINT test, which needs its own process.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from clirunner import SMALL_FASHION, invoke, metrics_of, summary_of, train_ok, without_seconds
from fastmlp.config import TrainConfig, resume_config
from fastmlp.display import EpochDisplay
from fastmlp.errors import ConfigError
from fastmlp.model import load_model
from fastmlp.rundir import load_checkpoint

# nadam: both optimizer-state buffers and the step counter (bias correction) matter.
RUN = ("-e", "3", "-nhl", "2", "-sz", "16", "-b", "64", "-o", "nadam", "-lr", "0.003",
       "--seed", "7", "--wandb-mode", "disabled", "--no-plots")
RUN_NAME = "hl_2_bs_64_ac_ReLU"
N_TRAIN, N_TEST = SMALL_FASHION


# isolated caches and wandb state for every test here
pytestmark = pytest.mark.usefixtures("fastmlp_env")


def results(run_dir: Path) -> dict:
    """Everything a run computed (no timings, no paths)."""
    summary, metrics = summary_of(run_dir), metrics_of(run_dir)
    _, params, config, _ = load_model(run_dir / "model.npz")
    config.pop("output_dir")
    return {"epochs": without_seconds(summary["epochs"]), "metrics": without_seconds(metrics),
            "test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"],
            "confusion_matrix": summary["confusion_matrix"], "config": config,
            "train_command": summary["train_command"], "num_params": summary["num_params"],
            "fields": sorted(summary), "params": params.tobytes()}


@pytest.fixture(scope="module")
def reference(small_fashion, tmp_path_factory) -> dict:
    """The uninterrupted run."""
    run_dir = train_ok(tmp_path_factory.mktemp("reference"), *RUN, "--data-dir", small_fashion,
                       "--no-progress")
    assert run_dir.name == RUN_NAME
    return results(run_dir)


def whole_and_resumed(args, run_name: str, tmp_path, monkeypatch) -> tuple:
    """(results of `fastmlp ARGS` run through, results of the same run interrupted after
    epoch 2 and resumed), their output_dir left out."""
    whole_dir, parts_dir = tmp_path / "whole", tmp_path / "parts"
    assert invoke(*args, "--output-dir", whole_dir).code == 0
    interrupt_after_epoch(monkeypatch, 2)
    assert invoke(*args, "--output-dir", parts_dir).code == 130
    monkeypatch.undo()
    resumed = invoke("train", "--resume", parts_dir / run_name, "--no-progress")
    assert resumed.code == 0, resumed.err
    whole, parts = results(whole_dir / run_name), results(parts_dir / run_name)
    whole["config"].pop("output_dir", None), parts["config"].pop("output_dir", None)
    return whole, parts


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C right after `epoch` has been shown (the way a user's keypress lands)."""
    show = EpochDisplay.epoch_line

    def epoch_line(self, record):
        show(self, record)
        if record["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochDisplay, "epoch_line", epoch_line)


def resume_command(err: str) -> list:
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: resume with  fastmlp train --resume "), err
    return shlex.split(last.split("resume with", 1)[1])


# ----------------------------------------------------------------------------- resume

def test_interrupted_then_resumed_equals_uninterrupted(reference, small_fashion, tmp_path,
                                                       monkeypatch):
    interrupt_after_epoch(monkeypatch, 1)
    outcome = invoke("train", *RUN, "--data-dir", small_fashion, "--output-dir", tmp_path,
                     "--no-progress")
    assert outcome.code == 130
    assert "Traceback" not in outcome.err
    run_dir = tmp_path / RUN_NAME
    command = resume_command(outcome.err)
    assert command == ["fastmlp", "train", "--resume", str(run_dir)]
    assert {p.name for p in run_dir.iterdir()} == {"checkpoint.npz", "metrics.jsonl"}
    monkeypatch.undo()

    resumed = invoke(*command[1:])
    assert resumed.code == 0, resumed.err
    assert [line.split()[1] for line in resumed.err.splitlines()] == ["2/3", "3/3"]
    assert results(run_dir) == reference


def test_checkpoint_holds_the_state_after_each_epoch(small_fashion, tmp_path, monkeypatch):
    interrupt_after_epoch(monkeypatch, 2)
    outcome = invoke("train", *RUN, "--data-dir", small_fashion, "--output-dir", tmp_path,
                     "--no-progress")
    assert outcome.code == 130
    checkpoint = load_checkpoint(tmp_path / RUN_NAME)
    assert checkpoint.completed_epochs == 2
    assert [r["epoch"] for r in checkpoint.epochs] == [1, 2]
    n_train = N_TRAIN - round(N_TRAIN * 0.1)
    assert checkpoint.step == 2 * -(-n_train // 64)
    expected = np.random.default_rng([7, 1])  # the trainer's shuffle generator, two epochs on
    expected.permutation(n_train), expected.permutation(n_train)
    assert checkpoint.rng_state == expected.bit_generator.state
    assert checkpoint.shuffle_rng().permutation(5).tolist() == expected.permutation(5).tolist()
    assert checkpoint.config == TrainConfig(
        epochs=3, num_layers=2, hidden_size=16, batch_size=64, optimizer="nadam",
        learning_rate=0.003, seed=7, wandb_mode="disabled", output_dir=str(tmp_path),
        data_dir=str(small_fashion)).validated()  # the task and the loss decided
    assert np.abs(checkpoint.state2).sum() > 0  # nadam's second moments were saved


def test_real_ctrl_c_with_progress_bar_saves_and_resumes(reference, small_fashion, tmp_path):
    """SIGINT to a real process whose epochs run in the progress bar's worker thread."""
    slow_epochs = textwrap.dedent("""
        import sys, time
        import fastmlp.trainer as trainer
        run_epoch = trainer.run_epoch
        def slow(*args, **kwargs):  # room for the signal to land inside epoch 2
            time.sleep(0.4)
            return run_epoch(*args, **kwargs)
        trainer.run_epoch = slow
        import cli
        cli.main(sys.argv[1:])
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", slow_epochs, "train", *RUN, "--data-dir", str(small_fashion),
         "--output-dir", str(tmp_path), "--progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    try:
        while "epoch 1/3" not in seen:
            line = process.stderr.readline()
            assert line, f"the run ended before epoch 1: {seen}"
            seen += line
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, seen + err
    assert "Traceback" not in seen + err
    run_dir = tmp_path / RUN_NAME
    assert resume_command(err) == ["fastmlp", "train", "--resume", str(run_dir)]
    assert load_checkpoint(run_dir).completed_epochs == 1
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run_dir / "summary.json").exists() and not (run_dir / "model.npz").exists()

    resumed = invoke("train", "--resume", run_dir, "--no-progress")
    assert resumed.code == 0, resumed.err
    assert results(run_dir) == reference


def test_resume_rewrites_a_metrics_line_the_checkpoint_does_not_know(reference, small_fashion,
                                                                    tmp_path, monkeypatch):
    interrupt_after_epoch(monkeypatch, 1)
    invoke("train", *RUN, "--data-dir", small_fashion, "--output-dir", tmp_path, "--no-progress")
    monkeypatch.undo()
    run_dir = tmp_path / RUN_NAME
    with open(run_dir / "metrics.jsonl", "a") as handle:  # as if killed after the append
        handle.write('{"epoch": 2, "train_lo')
    resumed = invoke("train", "--resume", run_dir, "--no-progress", "--threads", "2")
    assert resumed.code == 0, resumed.err
    assert results(run_dir)["metrics"] == reference["metrics"]


def test_resume_accepts_machine_local_flags_only():
    saved = TrainConfig(threads=None, wandb_mode="offline").validated()
    changed = resume_config(saved, {"threads": 1, "wandb_mode": "disabled", "data_dir": "/d",
                                    "output_dir": "elsewhere", "activation": "relu"})
    assert (changed.threads, changed.wandb_mode, changed.data_dir) == (1, "disabled", "/d")
    assert changed.output_dir == saved.output_dir and changed.activation == "ReLU"
    with pytest.raises(ConfigError, match="-lr/--learning_rate"):
        resume_config(saved, {"learning_rate": 0.5})


# ----------------------------------------------------------------------------- training additions

ADDITIONS = ("--dropout", "0.2", "--input-dropout", "0.1", "--augment", "shift:2,flip",
             "--lr-schedule", "cosine", "--warmup-epochs", "1", "--label-smoothing", "0.1")


def test_resume_with_dropout_augmentation_and_a_schedule_equals_uninterrupted(
        small_fashion, tmp_path, monkeypatch):
    """The random draws are keyed by the step count and the schedule by the step: a resumed
    run draws and steps exactly as the uninterrupted one."""
    args = ("train", *RUN, *ADDITIONS, "--data-dir", small_fashion, "--no-progress")
    whole, parts = whole_and_resumed(args, RUN_NAME, tmp_path, monkeypatch)
    assert parts == whole
    rates = [record["learning_rate"] for record in whole["metrics"]]
    # each epoch records its last step's rate: the end of the warm-up, the cosine's middle
    # and its end
    assert rates == [0.003, pytest.approx(0.0015), pytest.approx(0.0, abs=1e-12)]


@pytest.mark.parametrize("activation", ["GELU", "SiLU", "LeakyReLU"])
def test_new_activations_resume_exactly_on_two_threads(activation, small_fashion, tmp_path,
                                                       monkeypatch):
    """GELU and SiLU keep their pre-activations per shard, LeakyReLU reads --leaky-slope:
    with dropout, on two threads (two shards a batch), a resumed run is the uninterrupted
    one, and so the same flags, seed and threads give the same numbers."""
    args = ("train", *RUN, "-a", activation, "--leaky-slope", "0.2", "--dropout", "0.2",
            "--threads", "2", "--data-dir", small_fashion, "--no-progress")
    whole, parts = whole_and_resumed(args, RUN_NAME.replace("ReLU", activation), tmp_path,
                                     monkeypatch)
    assert parts["config"]["activation"] == activation
    assert parts["config"]["leaky_slope"] == 0.2
    assert parts == whole


def test_residual_resumes_exactly_on_two_threads(small_fashion, tmp_path, monkeypatch):
    """--residual (-sz 16 16: one skip) with dropout on two threads: a resumed run is the
    uninterrupted one, and its model file says it has skips."""
    args = ("train", *RUN, "--residual", "--dropout", "0.2", "--threads", "2",
            "--data-dir", small_fashion, "--no-progress")
    whole, parts = whole_and_resumed(args, RUN_NAME, tmp_path, monkeypatch)
    assert parts["config"]["residual"] is True
    assert parts == whole


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_normed_runs_resume_exactly_on_two_threads(small_fashion, tmp_path, monkeypatch, norm):
    """--norm layer or batch with skips and dropout on two threads: a resumed run is the
    uninterrupted one (the scale, shift and BatchNorm's running statistics are in the
    checkpoint's buffers)."""
    args = ("train", *RUN, "--norm", norm, "--residual", "--dropout", "0.2", "--threads",
            "2", "--data-dir", small_fashion, "--no-progress")
    whole, parts = whole_and_resumed(args, RUN_NAME, tmp_path, monkeypatch)
    assert parts["config"]["norm"] == norm
    assert parts == whole


DEFORMATIONS = ("--rotate", "10", "--scale", "0.1", "--shear", "5", "--elastic", "8",
                "--elastic-sigma", "3", "--augment", "shift:1,flip", "--input-dropout", "0.1")


def test_resume_with_deformations_on_two_threads_equals_uninterrupted(reference, small_fashion,
                                                                       tmp_path, monkeypatch):
    """The deformations draw per example with the step and the example's place in the batch
    (not its thread): on two threads a resumed run is the uninterrupted one, and the run
    does differ from one without them."""
    args = ("train", *RUN, *DEFORMATIONS, "--threads", "2", "--data-dir", small_fashion,
            "--no-progress")
    whole, parts = whole_and_resumed(args, RUN_NAME, tmp_path, monkeypatch)
    assert (parts["config"]["rotate"], parts["config"]["elastic"]) == (10.0, 8.0)
    assert "--rotate 10.0" in parts["train_command"]
    assert parts == whole
    assert parts["params"] != reference["params"]


def test_the_best_epoch_is_kept_and_patience_stops_the_run(small_fashion, tmp_path):
    """--keep best (the default): model.npz and the test figures are the best validation
    epoch's; --patience 1 stops one epoch after the best."""
    args = ("train", "-e", "8", "-nhl", "1", "-sz", "32", "-b", "16", "-lr", "0.05",
            "--seed", "3", "--wandb-mode", "disabled", "--no-plots", "--threads", "1",
            "--data-dir", small_fashion, "--no-progress")
    best = invoke(*args, "--output-dir", tmp_path / "best")
    last = invoke(*args, "--keep", "last", "--output-dir", tmp_path / "last")
    assert best.code == 0 and last.code == 0, best.err + last.err
    best_summary = summary_of(tmp_path / "best" / "hl_1_bs_16_ac_ReLU")
    last_summary = summary_of(tmp_path / "last" / "hl_1_bs_16_ac_ReLU")
    accuracies = [record["val_accuracy"] for record in best_summary["epochs"]]
    assert len(accuracies) == 8
    assert without_seconds(best_summary["epochs"]) == without_seconds(last_summary["epochs"])
    best_epoch = 1 + accuracies.index(max(accuracies))
    assert best_summary["kept_epoch"] == best_summary["best_epoch"] == best_epoch
    assert last_summary["kept_epoch"] == 8
    if best_epoch != 8:  # the kept model is another one, and so are its test figures
        assert best_summary["test_loss"] != last_summary["test_loss"]

    patient = invoke(*args, "--patience", "1", "--output-dir", tmp_path / "patient")
    assert patient.code == 0, patient.err
    summary = summary_of(tmp_path / "patient" / "hl_1_bs_16_ac_ReLU")
    seen = [record["val_accuracy"] for record in summary["epochs"]]
    first_drop = next(i for i in range(1, 8) if seen[i] <= max(seen[:i]))
    assert len(seen) == first_drop + 1 and summary["stopped_early"]
    assert seen == accuracies[:len(seen)]
    assert "stopped early" in patient.err
