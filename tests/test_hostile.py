"""Hostile input, table-driven: bad flags, data files, model files, checkpoints, images,
sweep files and output paths (read-only, under a regular file, in /proc, a full disk).

Every case must end with ONE line `error: ...` on stderr, a non-zero exit, no traceback, no
output on stdout, and the sandbox exactly as it was: no partial file, no new run directory,
and the finished run (and the interrupted one) already in it untouched, byte for byte.

A full disk and a read-only directory are real filesystems: small tmpfs mounts (we run as
root). Where mounting is not permitted (or FASTMLP_TEST_NO_MOUNT=1), a full disk becomes
RLIMIT_FSIZE in a subprocess and the read-only cases are skipped.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from clirunner import Outcome, idx_bytes, invoke, skip_or_fail, write_idx_files
from fastmlp import data
from fastmlp.model import Layout, save_model
from fastmlp.display import EpochDisplay

N_TRAIN, N_TEST = 1000, 200
TINY = ("-e", "1", "-nhl", "0", "--wandb-mode", "disabled", "--no-progress")


# isolated caches and wandb state for every test here
pytestmark = pytest.mark.usefixtures("fastmlp_env")


# ----------------------------------------------------------------------------- module data

@pytest.fixture(scope="module")
def small_data(fashion_dir, tmp_path_factory) -> Path:
    """The first 1,000 training and 200 test images of Fashion-MNIST, as raw IDX files."""
    return write_idx_files(fashion_dir, tmp_path_factory.mktemp("small-fashion"),
                           N_TRAIN, N_TEST)


@pytest.fixture(scope="module")
def finished_run(small_data, tmp_path_factory) -> Path:
    """A finished run (model, summary, metrics, plots): existing results to protect."""
    output_dir = tmp_path_factory.mktemp("finished")
    outcome = invoke("train", *TINY, "--data-dir", small_data, "--output-dir", output_dir)
    assert outcome.code == 0, outcome.err
    return output_dir / "hl_0_bs_32_ac_ReLU"


@pytest.fixture(scope="module")
def interrupted_run(small_data, tmp_path_factory) -> Path:
    """A run stopped by Ctrl-C after epoch 1 of 3 (checkpoint and metrics, no model)."""
    output_dir = tmp_path_factory.mktemp("interrupted")
    show = EpochDisplay.epoch_line

    def epoch_line(self, record):
        show(self, record)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EpochDisplay, "epoch_line", epoch_line)
        outcome = invoke("train", "-e", "3", "-nhl", "0", "--wandb-mode", "disabled",
                         "--no-progress", "--data-dir", small_data, "--output-dir", output_dir)
    assert outcome.code == 130, outcome.err
    return output_dir / "hl_0_bs_32_ac_ReLU"


# ----------------------------------------------------------------------------- the sandbox

@dataclass
class Sandbox:
    """A case's world: tmp_path with a copy of a finished and an interrupted run."""

    root: Path
    data: Path  # the module's small dataset (read only)
    mounts: list = field(default_factory=list)
    fsize_limit: int | None = None  # set when a "full disk" is RLIMIT_FSIZE, not a tmpfs

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def run(self) -> Path:
        return self.runs / "hl_0_bs_32_ac_ReLU"

    @property
    def model(self) -> Path:
        return self.run / "model.npz"

    @property
    def interrupted(self) -> Path:
        return self.root / "interrupted" / "hl_0_bs_32_ac_ReLU"

    def file(self, name: str, content: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    def data_copy(self, name="data") -> Path:
        return Path(shutil.copytree(self.data, self.root / name))

    def model_file(self, name: str, sizes=(784, 10), params=None, class_names=None,
                   config=None) -> Path:
        layout = Layout(tuple(sizes))
        if params is None:
            params = np.zeros(layout.num_params, dtype=np.float32)
        config = config or {"activation": "ReLU", "loss": "cross_entropy",
                            "dataset": "fashion_mnist"}
        names = class_names or [str(i) for i in range(layout.sizes[-1])]
        path = self.root / name
        save_model(path, layout, params, config, names)
        return path

    def tmpfs(self, name: str, size: str, readonly=False) -> Path:
        """A fresh tmpfs at root/name (skips the case when mounting is not permitted, except
        under .ci/run, where it fails)."""
        path = self.root / name
        path.mkdir()
        if not self._mount(path, size):
            skip_or_fail("mounting a tmpfs is not permitted here")
        if readonly:
            self.remount_readonly(path)
        return path

    def small_disk(self, name: str, size_kb: int) -> Path:
        """A directory on a disk of size_kb: a tmpfs, else RLIMIT_FSIZE for the command."""
        path = self.root / name
        path.mkdir()
        if not self._mount(path, f"{size_kb}k"):
            self.fsize_limit = size_kb * 1024
        return path

    def remount_readonly(self, path: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)

    def fill(self, path: Path, leave_bytes: int) -> None:
        """Fill the filesystem holding `path` until only about leave_bytes are free."""
        stat = os.statvfs(path)
        free = stat.f_bavail * stat.f_frsize
        (path / "filler").write_bytes(bytes(max(free - leave_bytes, 0)))

    def _mount(self, path: Path, size: str) -> bool:
        if os.environ.get("FASTMLP_TEST_NO_MOUNT"):  # exercise the fallbacks
            return False
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                               str(path)], capture_output=True)
        if done.returncode == 0:
            self.mounts.append(path)
        return done.returncode == 0

    def unmount_all(self) -> None:
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def snapshot(root: Path) -> dict:
    """{relative path: sha256 or '<dir>'} for everything under root (wandb state aside)."""
    tree = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if "wandb" in relative.parts:
            continue
        tree[str(relative)] = "<dir>" if path.is_dir() else hashlib.sha256(
            path.read_bytes()).hexdigest()
    return tree


# ----------------------------------------------------------------------------- data cases

def _bad_data(mutate: Callable[[Path], None]):
    def make(box: Sandbox):
        directory = box.data_copy()
        mutate(directory)
        return ["train", *TINY, "--data-dir", directory, "--output-dir", box.runs]
    return make


def _truncate(directory: Path) -> None:
    path = directory / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1000])


def _wrong_magic(directory: Path) -> None:
    path = directory / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x02" + path.read_bytes()[4:])


def _count_mismatch(directory: Path) -> None:
    labels = data.read_idx(directory / "train-labels-idx1-ubyte")
    (directory / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:-7]))


def _corrupt_gzip(directory: Path) -> None:
    path = directory / "train-labels-idx1-ubyte"
    compressed = gzip.compress(path.read_bytes())
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(compressed[:20] + b"\xff" * 40
                                                          + compressed[60:])
    path.unlink()


def _label_out_of_range(directory: Path) -> None:
    labels = data.read_idx(directory / "t10k-labels-idx1-ubyte").copy()
    labels[5] = 10
    (directory / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))


def _missing_file(directory: Path) -> None:
    (directory / "t10k-images-idx3-ubyte").unlink()


def _header_only(directory: Path) -> None:
    (directory / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03")


def _samples_missing_class(box: Sandbox):
    directory = box.data_copy()
    labels = data.read_idx(directory / "train-labels-idx1-ubyte").copy()
    labels[labels == 7] = 5
    (directory / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return ["samples", "--data-dir", directory, "--output-dir", box.root / "pictures",
            "--wandb-mode", "disabled"]


def _own(files: dict, *flags):
    """`train --data FIRST_FILE` over files {name: text or a function of the sandbox's root
    writing the file}."""
    def make(box: Sandbox):
        for name, content in files.items():
            if callable(content):
                content(box.root / name)
            else:
                box.file(name, content.encode())
        return ["train", *TINY, "--data", box.root / next(iter(files)),
                *(flag(box) if callable(flag) else flag for flag in flags),
                "--output-dir", box.runs]
    return make


CSV_HEAD = "a,b,label\n"
CSV_ROWS = "".join(f"{i % 7},{i % 3},{'yes' if i % 2 else 'no'}\n" for i in range(40))


# a regression table: target y (whole numbers 0..100, more than --task auto's classes), weight w
NUM_HEAD = "a,b,y,w\n"
NUM_ROWS = "".join(f"{i % 7},{i % 3},{(i * 37) % 101 + 0.5},1\n" for i in range(40))


def _parquet_bytes(rows: int = 40) -> bytes:
    """A Parquet file of the a, b, label table's first `rows` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": np.arange(rows) % 7, "b": np.arange(rows) % 3,
                             "label": np.arange(rows) % 2}), sink)
    return sink.getvalue().to_pybytes()


def _npz(**arrays):
    return lambda path: np.savez(path, **arrays)


_X, _Y = np.zeros((30, 4), np.float32), np.arange(30) % 3
_TEST_CSV = lambda box: box.root / "test.csv"  # noqa: E731


# ----------------------------------------------------------------------------- model cases

def _evaluate(path_of: Callable[[Sandbox], Path]):
    return lambda box: ["evaluate", path_of(box), "--data-dir", box.data, "--no-plot"]


def _model_version_99(box: Sandbox) -> Path:
    with np.load(box.model) as stored:
        arrays = dict(stored)
    arrays["format_version"] = np.int64(99)
    path = box.root / "future.npz"
    np.savez(path, **arrays)
    return path


def _model_params_mismatch(box: Sandbox) -> Path:
    with np.load(box.model) as stored:
        arrays = dict(stored)
    arrays["params"] = arrays["params"][:-10]
    path = box.root / "short.npz"
    np.savez(path, **arrays)
    return path


def _model_members_mismatch(box: Sandbox) -> Path:
    """An ensemble file (format 3) whose configuration names 3 members but holds 2."""
    with np.load(box.model) as stored:
        arrays = dict(stored)
    config = json.loads(str(arrays["config_json"]))
    arrays.update(format_version=np.int64(3), params=np.stack([arrays["params"]] * 2),
                  config_json=np.str_(json.dumps({**config, "ensemble": 3})))
    path = box.root / "members.npz"
    np.savez(path, **arrays)
    return path


def _model_with_norm(norm: str):
    """A model of one hidden layer without normalisation's parameters whose configuration
    says --norm norm."""
    return lambda box: box.model_file(f"norm-{norm}.npz", (784, 16, 10), config={
        "activation": "ReLU", "loss": "cross_entropy", "dataset": "fashion_mnist",
        "norm": norm})


def _model_nan(box: Sandbox) -> Path:
    params = np.zeros(Layout((784, 10)).num_params, dtype=np.float32)
    params[17] = np.nan
    return box.model_file("nan.npz", params=params)


def _model_bad_slope(box: Sandbox) -> Path:
    return box.model_file("steep.npz", config={"activation": "LeakyReLU", "leaky_slope": -1.0,
                                               "loss": "cross_entropy",
                                               "dataset": "fashion_mnist"})


def _model_pickled(box: Sandbox) -> Path:
    path = box.root / "pickled.npz"
    np.savez(path, format_version=np.int64(1), sizes=np.array([784, 10]),
             params=np.array([{"evil": 1}], dtype=object), config_json=np.str_("{}"),
             class_names=np.array([str(i) for i in range(10)]))
    return path


# ----------------------------------------------------------------------------- predict cases

def _png(box: Sandbox, name="ok.png") -> Path:
    from PIL import Image

    path = box.root / name
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), "L").save(path)
    return path


def _truncated_png(box: Sandbox) -> Path:
    whole = _png(box, "whole.png").read_bytes()
    return box.file("cut.png", whole[:len(whole) // 2])


# ----------------------------------------------------------------------------- output cases

def _train_to(path_of: Callable[[Sandbox], Path]):
    return lambda box: ["train", *TINY, "--data-dir", box.data, "--output-dir", path_of(box)]


def _disk_full_after_first_epoch(box: Sandbox):
    # Room for the epoch-0 checkpoint (~94 KB), not for its replacement beside it.
    path = box.tmpfs("disk", "160k")
    return ["train", "-e", "2", "-nhl", "0", "--wandb-mode", "disabled", "--no-progress",
            "--data-dir", box.data, "--output-dir", path]


def _resume_on_full_disk(box: Sandbox):
    disk = box.small_disk("disk", 1024)
    run = Path(shutil.copytree(box.interrupted, disk / "run"))
    if box.fsize_limit is None:
        box.fill(disk, leave_bytes=32 * 1024)
    else:
        box.fsize_limit = 64 * 1024
    return ["train", "--resume", run]


def _plot_over_old_file_on_full_disk(box: Sandbox):
    disk = box.small_disk("disk", 256)
    (disk / "matrix.png").write_bytes(b"an older picture, kept")
    if box.fsize_limit is None:
        box.fill(disk, leave_bytes=8 * 1024)
    else:
        box.fsize_limit = 8 * 1024
    return ["evaluate", box.model, "--data-dir", box.data, "--plot", disk / "matrix.png"]


def _model_on_read_only_disk(box: Sandbox) -> Path:
    disk = box.tmpfs("shared", "1m")
    shutil.copy(box.model, disk / "model.npz")
    box.remount_readonly(disk)
    return disk / "model.npz"


def _read_only(box: Sandbox) -> Path:
    return box.tmpfs("readonly", "1m", readonly=True)


def _sweep(text: str | None, name="sweep.yaml", more=()):
    def make(box: Sandbox):
        path = box.root / name
        if text is not None:
            path.write_text(textwrap.dedent(text))
        return ["sweep", path, "--count", "1", "--output-dir", box.root / "sweep-out",
                "--data-dir", box.data, "--wandb-mode", "disabled",
                *(flag(box) if callable(flag) else flag for flag in more)]
    return make


_SMALL_SWEEP = "method: random\nparameters: {hidden_size: {values: [4, 8]}}\n"


def _ragged_csv(box: Sandbox) -> Path:
    return box.file("t.csv", (CSV_HEAD + CSV_ROWS + "1,2\n").encode())


FASHION_NAMES = list(data.REGISTRY["fashion_mnist"].class_names)
TABLE_MODEL = {"activation": "ReLU", "loss": "cross_entropy", "data": "t.csv"}  # no images


def _taught_by(teacher: Callable[[Sandbox], Path], *more):
    """`train` on the small data set with --teacher (a file the function makes)."""
    def make(box: Sandbox):
        return ["train", *TINY, "--data-dir", box.data, "--teacher", teacher(box), *more,
                "--output-dir", box.runs]
    return make


# ----------------------------------------------------------------------------- the table

CASES = [  # (id, argv or a function Sandbox -> argv, fragments of the error line)
    # flags
    ("flag-batch-size-0", ["train", "-b", "0"], ["-b/--batch_size"]),
    ("flag-val-fraction-1", ["train", "--val-fraction", "1"], ["--val-fraction"]),
    ("flag-threads-0", ["train", "--threads", "0"], ["--threads"]),
    ("flag-lr-inf", ["train", "-lr", "inf"], ["-lr/--learning_rate"]),
    ("flag-dropout-1", ["train", "--dropout", "1"], ["--dropout", "[0, 1)"]),
    ("flag-input-dropout-negative", ["train", "--input-dropout", "-0.1"], ["--input-dropout"]),
    ("flag-augment-negative-shift", ["train", "--augment", "shift:-1"], ["--augment", "shift:-1"]),
    ("flag-augment-unknown", ["train", "--augment", "rotate"], ["--augment", "rotate"]),
    ("flag-rotate-negative", ["train", "--rotate", "-5"], ["--rotate", "-5.0", "[0, 180]"]),
    ("flag-rotate-over-180", ["train", "--rotate", "200"], ["--rotate", "[0, 180]"]),
    ("flag-scale-1", ["train", "--scale", "1"], ["--scale", "[0, 1)"]),
    ("flag-shear-90", ["train", "--shear", "90"], ["--shear", "[0, 90)"]),
    ("flag-elastic-negative", ["train", "--elastic", "-34"], ["--elastic", ">= 0"]),
    ("flag-elastic-sigma-0", ["train", "--elastic", "34", "--elastic-sigma", "0"],
     ["--elastic-sigma", "> 0"]),
    ("flag-elastic-nan", ["train", "--elastic", "nan"], ["--elastic", "nan"]),
    ("flag-label-smoothing-2", ["train", "--label-smoothing", "2"], ["--label-smoothing"]),
    ("flag-label-smoothing-with-mse", ["train", "--label-smoothing", "0.1", "-l",
                                       "mean_squared_error"], ["--label-smoothing",
                                                               "cross_entropy"]),
    ("flag-lr-schedule-unknown", ["train", "--lr-schedule", "linear"], ["--lr-schedule"]),
    ("flag-activation-unknown", ["train", "-a", "swish"], ["--activation", "swish"]),
    ("flag-leaky-slope-negative", ["train", "-a", "LeakyReLU", "--leaky-slope", "-1"],
     ["--leaky-slope", "[0, 1)"]),
    ("flag-leaky-slope-1", ["train", "--leaky-slope", "1"], ["--leaky-slope", "[0, 1)"]),
    ("flag-leaky-slope-nan", ["train", "--leaky-slope", "nan"], ["--leaky-slope", "nan"]),
    ("flag-temperature-0", ["train", "--temperature", "0"], ["--temperature", "> 0"]),
    ("flag-temperature-negative", ["train", "--temperature", "-2"], ["--temperature", "> 0"]),
    ("flag-distill-weight-above-1", ["train", "--distill-weight", "1.5"],
     ["--distill-weight", "[0, 1]"]),
    ("flag-distill-weight-negative", ["train", "--distill-weight", "-0.1"],
     ["--distill-weight", "[0, 1]"]),
    ("flag-teacher-with-mse", ["train", "--teacher", "t.npz", "-l", "mean_squared_error"],
     ["--teacher", "cross_entropy, not mean_squared_error"]),
    # teachers (--teacher MODEL.npz)
    ("model-teacher-missing", _taught_by(lambda b: b.root / "nope.npz"),
     ["--teacher", "nope.npz", "no such model file"]),
    ("model-teacher-corrupt", _taught_by(lambda b: b.file("t.npz", os.urandom(3000))),
     ["--teacher", "t.npz", "not a fastmlp model"]),
    ("model-teacher-truncated",
     _taught_by(lambda b: b.file("t.npz", b.model.read_bytes()[:2000])),
     ["--teacher", "t.npz", "corrupt"]),
    ("model-teacher-checkpoint", _taught_by(lambda b: b.interrupted / "checkpoint.npz"),
     ["--teacher", "training checkpoint"]),
    ("model-teacher-other-classes", _taught_by(lambda b: b.model_file("t.npz")),
     ["--teacher", "t.npz: its classes (0, 1, 2, 3, ...) are not this data's (T-shirt/top"]),
    ("model-teacher-other-input-width",
     _taught_by(lambda b: b.model_file("t.npz", (100, 10), class_names=FASHION_NAMES,
                                       config=TABLE_MODEL)),
     ["--teacher", "t.npz: it takes 100 inputs, this data has 784"]),
    ("model-teacher-regression",
     _taught_by(lambda b: b.model_file("t.npz", (784, 1), class_names=["y"], config=dict(
         TABLE_MODEL, loss="squared_error", task="regression"))),
     ["--teacher", "t.npz: a regression model"]),
    ("model-teacher-for-a-regression-student",
     _own({"t.csv": NUM_HEAD + NUM_ROWS}, "--target", "y", "--task", "regression",
          "--teacher", lambda b: b.model),
     ["--teacher", "distillation teaches classes with cross_entropy, not squared_error"]),
    ("flag-leaky-slope-not-a-number", ["train", "--leaky-slope", "steep"], ["--leaky-slope"]),
    ("flag-residual-without-equal-widths", ["train", "--residual", "-nhl", "2", "-sz", "64",
                                            "32"], ["--residual", "64 32"]),
    ("flag-residual-one-layer", ["train", "--residual", "-nhl", "1"],
     ["--residual", "one hidden layer"]),
    ("flag-residual-with-a-value", ["train", "--residual", "yes"], ["yes"]),
    ("flag-norm-unknown", ["train", "--norm", "group"], ["--norm", "group"]),
    ("flag-norm-batch-of-one", ["train", "--norm", "batch", "-b", "1"],
     ["--norm batch", "at least 2 rows"]),
    ("flag-norm-without-hidden-layers", ["train", "--norm", "layer", "-nhl", "0"],
     ["--norm", "no hidden layer"]),
    ("flag-ensemble-0", ["train", "--ensemble", "0"], ["--ensemble", "0"]),
    ("flag-ensemble-negative", ["train", "--ensemble", "-2"], ["--ensemble", "-2"]),
    ("flag-ensemble-not-a-number", ["train", "--ensemble", "two"], ["--ensemble", "two"]),
    ("flag-ensemble-fraction", ["train", "--ensemble", "1.5"], ["--ensemble", "1.5"]),
    ("flag-ensemble-seeds-overflow", ["train", "--ensemble", "3", "--seed", str(2**32 - 2)],
     ["--ensemble", "2**32"]),
    ("flag-warmup-with-onecycle", ["train", "--lr-schedule", "onecycle", "--warmup-epochs",
                                   "1"], ["--warmup-epochs", "onecycle"]),
    ("flag-patience-negative", ["train", "--patience", "-1"], ["--patience"]),
    ("flag-keep-unknown", ["train", "--keep", "first"], ["--keep"]),
    ("flag-widths-zero", ["train", "-sz", "64", "0"], ["-sz/--hidden_size", "64 0"]),
    ("flag-widths-not-layers", ["train", "-sz", "64", "32", "-nhl", "3"],
     ["-sz/--hidden_size", "2 widths", "3 hidden layers"]),
    ("flag-widths-not-numbers", ["train", "-sz", "64x"], ["--hidden_size", "64x"]),
    ("flag-evaluate-dataset", lambda b: ["evaluate", b.model, "-d", "cifar10"], ["cifar10"]),
    ("flag-predict-top-k-11", lambda b: ["predict", b.model, _png(b), "--top-k", "11"],
     ["--top-k", "between 1 and 10"]),
    ("flag-predict-top-k-0", lambda b: ["predict", b.model, _png(b), "-k", "0"], ["--top-k"]),
    ("flag-predict-no-input", lambda b: ["predict", b.model], ["Missing argument"]),
    ("flag-evaluate-no-model", ["evaluate"], ["Missing argument"]),
    # checkpoints and --resume
    ("resume-changes-lr", lambda b: ["train", "--resume", b.interrupted, "-lr", "0.5"],
     ["-lr/--learning_rate", "--resume"]),
    ("resume-changes-epochs", lambda b: ["train", "--resume", b.interrupted, "-e", "9"],
     ["-e/--epochs"]),
    ("resume-adds-residual", lambda b: ["train", "--resume", b.interrupted, "--residual"],
     ["--residual", "--resume"]),
    ("resume-adds-norm", lambda b: ["train", "--resume", b.interrupted, "--norm", "layer"],
     ["--norm", "--resume"]),
    ("resume-adds-ensemble", lambda b: ["train", "--resume", b.interrupted, "--ensemble", "2"],
     ["--ensemble", "--resume"]),
    ("resume-changes-leaky-slope",
     lambda b: ["train", "--resume", b.interrupted, "--leaky-slope", "0.2"],
     ["--leaky-slope", "--resume"]),
    ("resume-missing-dir", lambda b: ["train", "--resume", b.root / "nope"],
     ["no such run directory"]),
    ("resume-finished-run", lambda b: ["train", "--resume", b.run], ["already finished"]),
    ("resume-no-checkpoint", lambda b: ["train", "--resume", b.root],
     ["no checkpoint.npz"]),
    ("resume-corrupt-checkpoint",
     lambda b: (b.interrupted.joinpath("checkpoint.npz").write_bytes(b"PK\x03\x04 broken"),
                ["train", "--resume", b.interrupted])[1], ["corrupt or unreadable checkpoint"]),
    ("resume-truncated-checkpoint",
     lambda b: (b.interrupted.joinpath("checkpoint.npz").write_bytes(
         b.interrupted.joinpath("checkpoint.npz").read_bytes()[:5000]),
                ["train", "--resume", b.interrupted])[1], ["checkpoint"]),
    ("resume-model-as-checkpoint",
     lambda b: (shutil.copy(b.model, b.interrupted / "checkpoint.npz"),
                ["train", "--resume", b.interrupted])[1], ["not a fastmlp checkpoint"]),
    # data files
    ("data-truncated-idx", _bad_data(_truncate), ["train-images-idx3-ubyte", "truncated"]),
    ("data-header-only", _bad_data(_header_only), ["truncated IDX header"]),
    ("data-wrong-magic", _bad_data(_wrong_magic), ["not an MNIST IDX file", "0x00000802"]),
    ("data-label-image-count-mismatch", _bad_data(_count_mismatch), ["993 labels", "1000 images"]),
    ("data-corrupt-gzip", _bad_data(_corrupt_gzip), ["train-labels-idx1-ubyte.gz", "gzip"]),
    ("data-label-out-of-range", _bad_data(_label_out_of_range), ["label value 10"]),
    ("data-missing-file", _bad_data(_missing_file), ["t10k-images-idx3-ubyte", "not found"]),
    ("data-dir-is-a-file",
     lambda b: ["train", *TINY, "--data-dir", b.file("plain", b"x"), "--output-dir", b.runs],
     ["not found in the given fashion_mnist data directory"]),
    ("data-samples-missing-class", _samples_missing_class, ["fashion_mnist", "no example of class 7 (Sneaker)"]),
    # model files
    ("model-other-architecture", _evaluate(lambda b: b.model_file("m100.npz", (100, 10))),
     ["another architecture", "100 inputs"]),
    ("model-five-outputs", _evaluate(lambda b: b.model_file("m5.npz", (784, 5))),
     ["another architecture", "5 outputs"]),
    ("model-params-mismatch", _evaluate(_model_params_mismatch), ["784-10 needs 7850"]),
    ("model-members-mismatch", _evaluate(_model_members_mismatch), ["[2, ", "needs 3 x "]),
    ("model-norm-unknown", _evaluate(_model_with_norm("group")), ["norm 'group' unknown"]),
    ("model-norm-without-its-parameters", _evaluate(_model_with_norm("layer")),
     ["norm-layer.npz", "needs"]),
    ("model-format-version-99", _evaluate(_model_version_99), ["format version 99"]),
    ("model-random-bytes", _evaluate(lambda b: b.file("junk.npz", os.urandom(3000))),
     ["not a fastmlp model file (not an .npz archive)"]),
    ("model-empty-file", _evaluate(lambda b: b.file("empty.npz", b"")),
     ["not a fastmlp model file (not an .npz archive)"]),
    ("model-truncated", _evaluate(lambda b: b.file("half.npz", b.model.read_bytes()[:20000])),
     ["not a fastmlp model file"]),
    ("model-pickled-objects", _evaluate(_model_pickled),
     ["not a fastmlp model file", "allow_pickle"]),
    ("model-is-a-checkpoint", _evaluate(lambda b: b.interrupted / "checkpoint.npz"),
     ["training checkpoint, not a model"]),
    ("model-is-a-directory", _evaluate(lambda b: b.run), ["is a directory"]),
    ("model-missing", _evaluate(lambda b: b.root / "missing.npz"), ["no such model file"]),
    ("model-nan-weights", _evaluate(_model_nan), ["NaN"]),
    ("model-bad-leaky-slope", _evaluate(_model_bad_slope), ["--leaky-slope", "[0, 1)"]),
    ("model-export-bad-leaky-slope", lambda b: ["export", _model_bad_slope(b),
                                                b.root / "model.onnx"],
     ["--leaky-slope", "[0, 1)"]),
    ("model-path-under-a-file", _evaluate(lambda b: b.file("plain", b"x") / "model.npz"),
     ["no such model file"]),
    ("model-predict-other-architecture",
     lambda b: ["predict", b.model_file("m100.npz", (100, 10)), _png(b)],
     ["another architecture"]),
    # predict inputs
    ("predict-text-file", lambda b: ["predict", b.model, b.file("notes.txt", b"hello\n")],
     ["notes.txt", "not a readable image"]),
    ("predict-truncated-png", lambda b: ["predict", b.model, _truncated_png(b)],
     ["cut.png", "not a readable image"]),
    ("predict-label-idx", lambda b: ["predict", b.model, b.data / "t10k-labels-idx1-ubyte"],
     ["label file"]),
    ("predict-missing-input", lambda b: ["predict", b.model, b.root / "gone.png"],
     ["gone.png", "no such file"]),
    ("predict-bad-among-good", lambda b: ["predict", b.model, _png(b), b.file("x.png", b"\x89PNG")],
     ["x.png"]),
    ("predict-directory-input", lambda b: ["predict", b.model, b.root], ["is a directory"]),
    # your own data (--data)
    ("data-csv-ragged-row", _own({"t.csv": CSV_HEAD + CSV_ROWS + "1,2\n" + CSV_ROWS}),
     ["t.csv", "line 42 has 2 fields, the header 3"]),
    ("data-csv-nan-feature-not-preprocessed",
     _own({"t.csv": CSV_HEAD + "nan,1,yes\n" + CSV_ROWS}, "--no-preprocess"),
     ["t.csv", "line 2, column 'a'", "a missing cell (--no-preprocess"]),
    ("data-csv-not-a-number", _own({"t.csv": CSV_HEAD + CSV_ROWS + "1,two,no\n"}),
     ["line 42, column 'b'", "'two' in a column of numbers", "--categorical b"]),
    ("data-csv-augmented", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--augment", "flip"),
     ["--augment", "table of 2 features"]),
    ("data-csv-rotated", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--rotate", "10"),
     ["--rotate", "deformations need images", "table of 2 features"]),
    ("data-csv-elastic", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--elastic", "34"),
     ["--elastic", "deformations need images"]),
    ("data-csv-no-label-column", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--label-column", "y"),
     ["no label column 'y'", "columns: a, b, label"]),
    ("data-csv-one-class", _own({"t.csv": CSV_HEAD + "1,2,yes\n" * 40}),
     ["one class only", "yes"]),
    ("data-csv-test-other-columns",
     _own({"t.csv": CSV_HEAD + CSV_ROWS, "test.csv": "a,b,c,label\n1,2,3,yes\n"},
          "--test-data", _TEST_CSV), ["test.csv", "same columns"]),
    ("data-csv-test-unknown-class",
     _own({"t.csv": CSV_HEAD + CSV_ROWS, "test.csv": CSV_HEAD + "1,2,maybe\n"},
          "--test-data", _TEST_CSV), ["test label 'maybe' is not a class"]),
    ("data-npz-width-mismatch",
     _own({"d.npz": _npz(x_train=_X, y_train=_Y, x_test=np.zeros((5, 3)), y_test=_Y[:5])}),
     ["d.npz", "same width"]),
    ("data-npz-no-x-train", _own({"d.npz": _npz(x=_X, y_train=_Y)}), ["no array x_train"]),
    ("data-npz-rows-labels-mismatch", _own({"d.npz": _npz(x_train=_X, y_train=_Y[:20])}),
     ["30 rows of features but 20 labels"]),
    ("data-unknown-format", _own({"d.xlsx": "1 2 3\n"}), ["d.xlsx", "not a table"]),
    # tables (fastmlp/tables.py, fastmlp/preprocess.py)
    ("data-csv-header-only", _own({"t.csv": CSV_HEAD}), ["t.csv", "no data rows after the header"]),
    ("data-csv-empty-file", _own({"t.csv": ""}), ["t.csv", "empty file"]),
    ("data-csv-column-twice", _own({"t.csv": "a,a,label\n" + CSV_ROWS}),
     ["t.csv", "the column 'a' appears twice"]),
    ("data-csv-identifier-column",
     _own({"t.csv": "name,a,label\n" + "".join(f"n{i},{i},{i % 2}\n" for i in range(60))}),
     ["column 'name' looks like an identifier", "--drop name"]),
    ("data-csv-text-past-the-sample",
     _own({"t.csv": lambda path: path.write_text(
         CSV_HEAD + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(150_000)) + "x,1,0\n")}),
     ["line 150002, column 'a'", "'x' in a column of numbers"]),
    ("data-csv-infinite-feature", _own({"t.csv": CSV_HEAD + CSV_ROWS + "inf,1,no\n"}),
     ["line 42, column 'a'", "an infinite number"]),
    ("data-csv-bad-delimiter", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--delimiter", ";;"),
     ["--delimiter", "one character"]),
    ("data-csv-unknown-categorical", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--categorical", "z"),
     ["--categorical 'z': no such column"]),
    ("data-csv-unknown-drop", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--drop", "z"),
     ["no --drop column 'z'"]),
    ("data-csv-text-not-preprocessed",
     _own({"t.csv": "c,a,label\n" + "x,1,0\n" * 20 + "y,2,1\n" * 20}, "--no-preprocess"),
     ["line 2, column 'c'", "'x' is not a number"]),
    ("data-csv-dates", _own({"t.csv": "d,a,label\n" + "".join(
        f"2024-01-{i % 28 + 1:02d},{i},{i % 2}\n" for i in range(40))}),
     ["column 'd' holds", "--drop d"]),
    ("data-parquet-truncated",
     _own({"t.parquet": lambda path: path.write_bytes(_parquet_bytes()[:300])}),
     ["t.parquet", "not a readable Parquet file"]),
    ("data-parquet-empty", _own({"t.parquet": lambda path: path.write_bytes(_parquet_bytes(0))}),
     ["t.parquet", "no data rows"]),
    ("data-feather-random-bytes", _own({"t.feather": lambda path: path.write_bytes(b"x" * 500)}),
     ["t.feather", "not a readable Arrow/Feather file"]),
    # regression, multilabel and row weights (--task, --target, --weight-column)
    ("data-regression-text-target", _own({"t.csv": CSV_HEAD + CSV_ROWS}, "--task", "regression"),
     ["t.csv", "line 2", "'no' is not a number", "regression learns numbers"]),
    ("data-regression-nan-target", _own({"t.csv": NUM_HEAD + NUM_ROWS + "1,2,nan,1\n"},
                                        "--target", "y"), ["t.csv", "line 42", "empty 'y'"]),
    ("data-regression-infinite-target",
     _own({"t.csv": NUM_HEAD + "1,2,inf,1\n" + NUM_ROWS}, "--task", "regression", "--target", "y"),
     ["line 2", "NaN or infinite"]),
    ("data-regression-constant-target", _own({"t.csv": NUM_HEAD + "1,2,5.5,1\n" * 40},
                                             "--target", "y"), ["target is constant"]),
    ("data-poisson-negative-target", _own({"t.csv": NUM_HEAD + NUM_ROWS + "1,2,-3,1\n"},
                                          "--target", "y", "-l", "poisson"),
     ["line 42", "negative", "poisson"]),
    ("data-multilabel-never-positive",
     _own({"m.npz": _npz(x_train=_X, y_train=np.stack([_Y % 2, 0 * _Y], 1))}),
     ["m.npz", "target_1", "never 1"]),
    ("data-multilabel-not-0-1",
     _own({"m.npz": _npz(x_train=_X, y_train=np.stack([_Y, 1 - _Y % 2], 1))},
          "--task", "multilabel"), ["m.npz", "row 2", "multilabel targets are 0 or 1"]),
    ("data-target-missing", _own({"t.csv": NUM_HEAD + NUM_ROWS}, "--target", "price"),
     ["no label column 'price'", "columns: a, b, y, w"]),
    ("data-one-of-targets-missing", _own({"t.csv": NUM_HEAD + NUM_ROWS}, "--target", "y", "q"),
     ["no target column 'q'"]),
    ("data-weight-column-missing", _own({"t.csv": NUM_HEAD + NUM_ROWS}, "--target", "y",
                                        "--weight-column", "weight"),
     ["no weight column 'weight'"]),
    ("data-weight-not-numeric", _own({"t.csv": NUM_HEAD + NUM_ROWS + "1,2,3,heavy\n"},
                                     "--target", "y", "--weight-column", "w"),
     ["line 42", "weight column 'w'", "'heavy', not a number"]),
    ("data-weight-negative", _own({"t.csv": NUM_HEAD + NUM_ROWS + "1,2,3,-1\n"},
                                  "--target", "y", "--weight-column", "w"),
     ["line 42", "-1.0", "finite numbers >= 0"]),
    ("data-weight-nan", _own({"t.csv": NUM_HEAD + "1,2,3,nan\n" + NUM_ROWS},
                             "--target", "y", "--weight-column", "w"), ["line 2", "nan"]),
    ("data-weights-all-zero", _own({"t.csv": NUM_HEAD + NUM_ROWS.replace(",1\n", ",0\n")},
                                   "--target", "y", "--weight-column", "w"),
     ["every weight is 0"]),
    ("data-loss-of-another-task", _own({"t.csv": NUM_HEAD + NUM_ROWS}, "--target", "y",
                                       "--task", "regression", "-l", "cross_entropy"),
     ["-l/--loss", "cross_entropy is a loss for classification"]),
    ("data-monitor-of-another-task", _own({"t.csv": NUM_HEAD + NUM_ROWS}, "--target", "y",
                                          "--task", "regression", "--monitor", "val_accuracy"),
     ["--monitor", "regression records val_loss, val_rmse"]),
    ("data-missing-path", lambda b: ["train", *TINY, "--data", b.root / "nope.csv",
                                     "--output-dir", b.runs], ["nope.csv", "no such file"]),
    # export
    ("export-not-a-model", lambda b: ["export", b.file("junk.npz", os.urandom(3000)),
                                      b.root / "m.onnx"], ["junk.npz", "not a fastmlp model"]),
    ("export-checkpoint", lambda b: ["export", b.interrupted / "checkpoint.npz",
                                     b.root / "m.onnx"], ["training checkpoint"]),
    ("export-output-under-a-file",
     lambda b: ["export", b.model, b.file("plain", b"x") / "m.onnx"],
     ["cannot write", "Not a directory"]),
    ("export-output-read-only", lambda b: ["export", b.model, _read_only(b) / "m.onnx"],
     ["cannot write", "Read-only file system"]),
    ("export-output-full-disk", lambda b: ["export", b.model, b.small_disk("disk", 16) / "m.onnx"],
     ["cannot write", "m.onnx"]),
    ("export-output-is-a-directory", lambda b: ["export", b.model, b.root],
     ["is a directory"]),
    # output paths
    ("output-under-a-regular-file", _train_to(lambda b: b.file("plain", b"x") / "runs"),
     ["cannot create a run directory", "Not a directory"]),
    ("output-in-proc", _train_to(lambda b: Path("/proc/fastmlp-runs")),
     ["cannot create a run directory in /proc/fastmlp-runs"]),
    ("output-read-only", _train_to(_read_only), ["Read-only file system"]),
    ("output-disk-full-at-start", _train_to(lambda b: b.small_disk("disk", 64)),
     ["cannot write", "checkpoint.npz"]),
    ("output-disk-full-after-epoch-1", _disk_full_after_first_epoch,
     ["cannot write", "checkpoint.npz", "No space left on device"]),
    ("output-resume-on-full-disk", _resume_on_full_disk, ["cannot write", "checkpoint.npz"]),
    ("output-evaluate-plot-read-only",
     lambda b: ["evaluate", b.model, "--data-dir", b.data, "--plot", _read_only(b) / "m.png"],
     ["cannot write", "Read-only file system"]),
    ("output-evaluate-default-plot-beside-read-only-model",
     lambda b: ["evaluate", _model_on_read_only_disk(b), "--data-dir", b.data],
     ["cannot write", "Read-only file system", "--plot PATH, or --no-plot"]),
    ("output-evaluate-plot-under-a-file",
     lambda b: ["evaluate", b.model, "--data-dir", b.data, "--plot",
                b.file("plain", b"x") / "m.png"], ["cannot write", "Not a directory"]),
    ("output-evaluate-plot-full-disk-keeps-old-file", _plot_over_old_file_on_full_disk,
     ["cannot write", "matrix.png"]),
    ("output-samples-under-a-file",
     lambda b: ["samples", "--data-dir", b.data, "--wandb-mode", "disabled", "--output-dir",
                b.file("plain", b"x") / "pictures"], ["cannot create", "Not a directory"]),
    ("output-samples-read-only",
     lambda b: ["samples", "--data-dir", b.data, "--wandb-mode", "disabled", "--output-dir",
                _read_only(b)], ["cannot write", "Read-only file system"]),
    # sweep files
    ("sweep-yaml-not-a-mapping", _sweep("- method: random\n- parameters: {}\n"),
     ["must be a YAML mapping"]),
    ("sweep-yaml-a-string", _sweep("just some words\n"), ["must be a YAML mapping"]),
    ("sweep-invalid-yaml", _sweep("method: random\nparameters: {epochs: [1, 2\n"),
     ["not valid YAML"]),
    ("sweep-unknown-parameter", _sweep("""
        method: random
        parameters:
          colour: {values: [red, blue]}
     """), ["unknown parameter", "colour"]),
    ("sweep-missing-file", _sweep(None, "absent.yaml"), ["absent.yaml", "not found"]),
    ("sweep-seeds-0", _sweep(_SMALL_SWEEP, more=["--seeds", "0"]), ["--seeds: 0 must be >= 1"]),
    ("sweep-seeds-negative", _sweep(_SMALL_SWEEP, more=["--seeds", "-2"]),
     ["--seeds: -2 must be >= 1"]),
    ("sweep-seeds-not-a-number", _sweep(_SMALL_SWEEP, more=["--seeds", "two"]),
     ["--seeds", "'two' is not a valid integer"]),
    ("sweep-seeds-with-wandb-engine",
     _sweep(_SMALL_SWEEP, more=["--seeds", "2", "--engine", "wandb"]),
     ["--seeds is for the optuna engine"]),
    ("sweep-own-data-ragged-csv",
     _sweep(_SMALL_SWEEP, more=["--data", _ragged_csv]),
     ["t.csv", "line 42 has 2 fields, the header 3"]),
    ("sweep-teacher-missing", _sweep(_SMALL_SWEEP, more=["--teacher", "nope.npz"]),
     ["--teacher", "nope.npz", "no such model file"]),
    ("sweep-own-data-and-a-swept-dataset",
     _sweep("method: random\nparameters: {dataset: {values: [mnist, fashion_mnist]}}\n",
            more=["--data", "t.csv"]), ["--data", "already sets dataset"]),
]


@pytest.fixture
def sandbox(tmp_path, small_data, finished_run, interrupted_run):
    box = Sandbox(tmp_path, small_data)
    shutil.copytree(finished_run, box.run)
    shutil.copytree(interrupted_run, box.interrupted)
    yield box
    box.unmount_all()


@pytest.mark.parametrize("argv, fragments", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_hostile_input_is_one_error_line_and_changes_nothing(argv, fragments, sandbox):
    if callable(argv):
        argv = argv(sandbox)
    before = snapshot(sandbox.root)
    outcome = run(argv, sandbox.fsize_limit)
    assert outcome.code not in (0, None), outcome
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in outcome.err + outcome.out
    assert outcome.out == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert snapshot(sandbox.root) == before  # no partial file, nothing overwritten


def run(argv, fsize_limit) -> Outcome:
    if fsize_limit is None:
        return invoke(*argv)
    # No tmpfs: a "disk" of fsize_limit bytes per file, in a process of its own.
    limited = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize_limit}, {fsize_limit}))
        import cli
        cli.main(sys.argv[1:])
    """)
    done = subprocess.run([sys.executable, "-c", limited, *map(str, argv)],
                          capture_output=True, text=True, timeout=300)
    return Outcome(done.returncode, done.stdout, done.stderr)


def test_the_table_is_broad_enough():
    kinds = {case[0].split("-")[0] for case in CASES}
    assert {"flag", "resume", "data", "model", "predict", "output", "sweep"} <= kinds
    assert len(CASES) >= 20
