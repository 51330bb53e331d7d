"""Knowledge distillation end to end: `fastmlp train --teacher MODEL.npz` on a 2,000-image
slice of Fashion-MNIST, real kernels, in-process `cli.main` calls. The kernels' parity and
gradient checks are in test_kernels.py; bad teachers and values in test_hostile.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clirunner import invoke, summary_of, train_ok
from fastmlp import data
from fastmlp.inference import open_model
from test_daily_resume import interrupt_after_epoch, results, whole_and_resumed

pytestmark = pytest.mark.usefixtures("fastmlp_env")

QUIET = ("--wandb-mode", "disabled", "--no-plots", "--no-progress", "--threads", "2")
STUDENT = ("-nhl", "0", "-b", "64", "--seed", "3", *QUIET, "-e", "3")
STUDENT_NAME = "hl_0_bs_64_ac_ReLU"


@pytest.fixture(scope="module")
def teacher(small_fashion, tmp_path_factory) -> Path:
    """A teacher wider and deeper than its students: model.npz of a finished run."""
    run_dir = train_ok(tmp_path_factory.mktemp("teacher"), "-e", "4", "-nhl", "1", "-sz", "128",
                       "-b", "32", "--seed", "1", *QUIET, "--data-dir", small_fashion)
    return run_dir / "model.npz"


def inputs_of_the_test_set(small_fashion) -> np.ndarray:
    images = data.read_idx(small_fashion / "t10k-images-idx3-ubyte")
    return data.scale_pixels(images.reshape(len(images), -1), np.float32)


def mean_kl(p, q) -> float:
    """Mean KL(p || q) over rows."""
    return float(np.mean(np.sum(p * (np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(q, 1e-30))),
                                axis=1)))


def test_the_student_learns_the_teachers_outputs(teacher, small_fashion, tmp_path):
    """With weight 1 the student learns only the teacher's softened outputs: on the test
    images its probabilities are nearer the teacher's, and it agrees with the teacher more,
    than the same student taught by the labels alone. It is an ordinary model: it predicts
    without the teacher."""
    longer = (*STUDENT[:-1], "8", "--data-dir", small_fashion)  # 8 epochs
    taught = train_ok(tmp_path / "taught", *longer, "--teacher", teacher, "--distill-weight",
                      "1", "--temperature", "2")
    plain = train_ok(tmp_path / "plain", *longer)
    x = inputs_of_the_test_set(small_fashion)
    p_teacher = open_model(teacher).outputs(x)
    p_taught, p_plain = (open_model(run / "model.npz").outputs(x) for run in (taught, plain))
    assert mean_kl(p_teacher, p_taught) < 0.7 * mean_kl(p_teacher, p_plain)
    agree = [np.mean(p.argmax(axis=1) == p_teacher.argmax(axis=1)) for p in (p_taught, p_plain)]
    assert agree[0] > agree[1]

    summary = summary_of(taught)
    assert summary["config"]["teacher"] == str(teacher)
    assert len(summary["teacher_sha256"]) == 64 and "teacher_sha256" not in summary_of(plain)
    assert "--teacher" in summary["train_command"]
    moved = shutil.move(teacher, tmp_path / "away.npz")  # no teacher needed to use the student
    try:
        outcome = invoke("evaluate", taught / "model.npz", "--data-dir", small_fashion)
    finally:
        shutil.move(moved, teacher)
    assert outcome.code == 0, outcome.err


def test_weight_zero_is_the_labels_alone_and_weights_change_the_run(teacher, small_fashion,
                                                                   tmp_path):
    """--distill-weight 0 trains exactly as no teacher; another weight or temperature trains
    otherwise (the loss is in the records: train_loss with the soft term, val_loss without)."""
    runs = {}
    for name, flags in (("none", ()), ("zero", ("--teacher", teacher, "--distill-weight", "0")),
                        ("half", ("--teacher", teacher, "--distill-weight", "0.5")),
                        ("hot", ("--teacher", teacher, "--distill-weight", "0.5",
                                 "--temperature", "8"))):
        runs[name] = results(train_ok(tmp_path / name, *STUDENT, *flags,
                                      "--data-dir", small_fashion))
    assert runs["zero"]["params"] == runs["none"]["params"]
    assert runs["zero"]["epochs"] == runs["none"]["epochs"]
    assert runs["half"]["params"] != runs["none"]["params"]
    assert runs["hot"]["params"] != runs["half"]["params"]


def test_a_resumed_distillation_equals_the_uninterrupted_one(teacher, small_fashion, tmp_path,
                                                             monkeypatch):
    args = ("train", *STUDENT, "--teacher", teacher, "--dropout", "0.1", "--augment", "shift:1",
            "--data-dir", small_fashion)
    whole, parts = whole_and_resumed(args, STUDENT_NAME, tmp_path, monkeypatch)
    assert parts["config"]["teacher"] == str(teacher)
    assert parts == whole


def test_resume_refuses_a_teacher_file_that_changed(teacher, small_fashion, tmp_path,
                                                    monkeypatch):
    """The soft targets are recomputed from the teacher's file on resume: another file at
    that path (here: another model) is one error line, and the run stays resumable."""
    mine = Path(shutil.copy(teacher, tmp_path / "teacher.npz"))
    interrupt_after_epoch(monkeypatch, 1)
    outcome = invoke("train", *STUDENT, "--teacher", mine, "--data-dir", small_fashion,
                     "--output-dir", tmp_path / "runs")
    assert outcome.code == 130, outcome.err
    monkeypatch.undo()
    run_dir = tmp_path / "runs" / STUDENT_NAME
    other = train_ok(tmp_path / "other", "-e", "1", "-nhl", "0", "--seed", "9", *QUIET,
                     "--data-dir", small_fashion)
    shutil.copy(other / "model.npz", mine)
    refused = invoke("train", "--resume", run_dir, "--no-progress")
    assert refused.code == 1
    assert refused.err_lines == [f"error: {mine}: the teacher has changed since the run started "
                                 "(its SHA-256 differs); --resume needs the same teacher file"]
    shutil.copy(teacher, mine)
    resumed = invoke("train", "--resume", run_dir, "--no-progress")
    assert resumed.code == 0, resumed.err


def test_an_ensemble_teaches_its_members_softened_probabilities_averaged(small_fashion,
                                                                         tmp_path):
    """A teacher of --ensemble 2: its soft targets are the mean of each member's softmax at
    the temperature (not the softened mean), and a student learns from it."""
    from fastmlp.engine import predict_outputs
    from fastmlp.inference import soften

    run_dir = train_ok(tmp_path / "pair", "-e", "2", "-nhl", "1", "-sz", "32", "--ensemble",
                       "2", *QUIET, "--data-dir", small_fashion)
    pair = open_model(run_dir / "model.npz")
    assert pair.params.shape[0] == 2
    x = inputs_of_the_test_set(small_fashion)[:500]
    members = [soften(predict_outputs(member, pair.layout, x, pair.settings)[0], 3.0)
               for member in pair.params]
    np.testing.assert_allclose(pair.soft_targets(x, 3.0), (members[0] + members[1]) / 2,
                               rtol=1e-12)
    assert np.abs(pair.soft_targets(x, 3.0) - soften(pair.outputs(x), 3.0)).max() > 1e-6
    student = train_ok(tmp_path / "student", *STUDENT, "--teacher", run_dir / "model.npz",
                       "--data-dir", small_fashion)
    assert summary_of(student)["teacher_sha256"]
