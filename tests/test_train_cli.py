"""End-to-end tests of `fastmlp train`: real data, real Numba kernels, real wandb (offline).

Most runs call `cli.main([...])` in this process, so the kernels load once; a few checks run
the real programs (`fastmlp`, `python cli.py`) in a subprocess. Runs are small
(`-e 1 -nhl 1 -sz 16`) so the file stays well under two minutes on two cores.
"""
from __future__ import annotations

import gzip
import math
import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clirunner import Outcome, invoke, metrics_of, summary_of, train_ok, without_seconds
from fastmlp.config import TrainConfig
from fastmlp.data import DEBIAN_FASHION_MNIST_DIR, load_dataset, scale_pixels
from fastmlp.model import load_model
from fastmlp.engine import evaluate_params

REPO = Path(__file__).resolve().parents[1]
SMALL = ("-e", "1", "-nhl", "1", "-sz", "16")
QUIET = ("--wandb-mode", "disabled", "--no-progress", "--no-plots", "--threads", "1")
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  train loss \S+  acc \S+  \|  val loss \S+  acc \S+"
                        r"  \|  \S+ s$")
# The seed README's example configuration: the defaults of every spec flag.
SEED_README_DEFAULTS = dict(
    wandb_project="myprojectname", wandb_entity="myname", dataset="fashion_mnist", epochs=10,
    batch_size=32, loss="cross_entropy", optimizer="adam", learning_rate=0.001, momentum=0.9,
    beta=0.9, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0005, weight_init="Xavier",
    num_layers=3, hidden_size=64, activation="ReLU")


@pytest.fixture(scope="module", autouse=True)
def env(fastmlp_env, fashion_dir):
    """Every test here: isolated caches and wandb state, the machine's Fashion-MNIST."""


# ----------------------------------------------------------------------------- helpers

def train(output_dir: Path, *args) -> Outcome:
    return invoke("train", *args, "--output-dir", output_dir)


def subprocess_env() -> dict:
    env = dict(os.environ)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        env.pop(var, None)
    return env


def assert_one_error_line(outcome: Outcome, *fragments) -> None:
    assert outcome.code != 0
    assert len(outcome.err_lines) == 1, outcome.err
    line = outcome.err_lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in outcome.err + outcome.out
    for fragment in fragments:
        assert fragment in line, line


# ----------------------------------------------------------------------------- one shared run

@pytest.fixture(scope="module")
def fashion_run(env, tmp_path_factory):
    """2 epochs of a 1x64 net on Fashion-MNIST, every other flag at its default."""
    output_dir = tmp_path_factory.mktemp("fashion-run") / "runs"
    outcome = train(output_dir, "-e", "2", "-nhl", "1", "-sz", "64", "--wandb-mode", "disabled",
                    "--no-progress")
    assert outcome.code == 0, outcome.err
    return output_dir, outcome


def test_defaults_are_the_seed_readme_example(fashion_run):
    config = TrainConfig().validated()  # the loss follows the task: images of classes
    assert {name: getattr(config, name) for name in SEED_README_DEFAULTS} == SEED_README_DEFAULTS
    output_dir, _ = fashion_run
    recorded = summary_of(output_dir / "hl_1_bs_32_ac_ReLU")["config"]
    expected = dict(SEED_README_DEFAULTS, epochs=2, num_layers=1, hidden_size=64)
    assert {name: recorded[name] for name in expected} == expected


def test_run_directory_holds_metrics_summary_and_model(fashion_run):
    output_dir, outcome = fashion_run
    assert sorted(p.name for p in output_dir.iterdir()) == ["hl_1_bs_32_ac_ReLU"]
    run_dir = output_dir / "hl_1_bs_32_ac_ReLU"
    assert {"metrics.jsonl", "summary.json", "model.npz"} <= {p.name for p in run_dir.iterdir()}

    summary = summary_of(run_dir)
    metrics = metrics_of(run_dir)
    assert [r["epoch"] for r in metrics] == [1, 2]
    assert summary["epochs"] == metrics
    for record in metrics:
        assert set(record) == {"epoch", "train_loss", "train_accuracy", "val_loss",
                               "val_accuracy", "learning_rate", "train_seconds"}
        assert all(math.isfinite(record[k]) for k in record)
        assert 0 <= record["train_accuracy"] <= 1 and 0 <= record["val_accuracy"] <= 1
    assert summary["compile_seconds"] >= 0
    assert summary["num_params"] == 784 * 64 + 64 + 64 * 10 + 10

    matrix = np.array(summary["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) / 10_000 == pytest.approx(summary["test_accuracy"])
    assert math.isfinite(summary["test_loss"])
    assert len(summary["class_names"]) == 10
    assert f"test accuracy {summary['test_accuracy']:.4f}" in outcome.out
    assert str(run_dir) in outcome.out


def test_model_file_gives_the_summary_test_accuracy(fashion_run):
    output_dir, _ = fashion_run
    run_dir = output_dir / "hl_1_bs_32_ac_ReLU"
    summary = summary_of(run_dir)
    layout, params, config, class_names = load_model(run_dir / "model.npz")
    assert layout.sizes == (784, 64, 10)
    assert config == summary["config"] and list(class_names) == summary["class_names"]
    data = load_dataset("fashion_mnist")
    loss, accuracy, _ = evaluate_params(params, layout, scale_pixels(data.x_test, params.dtype),
                                        data.y_test.astype(np.int64),
                                        TrainConfig.from_saved(config))
    assert accuracy == summary["test_accuracy"]
    assert loss == pytest.approx(summary["test_loss"], rel=1e-6)


def test_learns_fashion_mnist(fashion_run):
    output_dir, _ = fashion_run
    summary = summary_of(output_dir / "hl_1_bs_32_ac_ReLU")
    first, second = summary["epochs"]
    assert second["train_loss"] < first["train_loss"]
    assert second["val_accuracy"] > 0.8
    assert summary["test_accuracy"] > 0.8  # about 0.84 after 2 epochs


def test_no_progress_prints_one_plain_line_per_epoch(fashion_run):
    _, outcome = fashion_run
    lines = outcome.err_lines
    assert [EPOCH_LINE.match(line).groups() for line in lines] == [("1", "2"), ("2", "2")]


def test_disabled_wandb_writes_no_wandb_files(fashion_run):
    output_dir, _ = fashion_run
    assert not list(output_dir.rglob("*wandb*"))


# ----------------------------------------------------------------------------- flags

SPEC_VALUES = [  # (short, long, value given, value recorded): none of them a default
    ("-wp", "--wandb_project", "proj-x", "proj-x"),
    ("-we", "--wandb_entity", "team-y", "team-y"),
    ("-d", "--dataset", "mnist", "mnist"),
    ("-e", "--epochs", "1", 1),
    ("-b", "--batch_size", "64", 64),
    ("-l", "--loss", "mean_squared_error", "mean_squared_error"),
    ("-o", "--optimizer", "nadam", "nadam"),
    ("-lr", "--learning_rate", "0.002", 0.002),
    ("-m", "--momentum", "0.8", 0.8),
    ("-beta", "--beta", "0.85", 0.85),
    ("-beta1", "--beta1", "0.8", 0.8),
    ("-beta2", "--beta2", "0.99", 0.99),
    ("-eps", "--epsilon", "1e-7", 1e-7),
    ("-w_d", "--weight_decay", "0.001", 0.001),
    ("-w_i", "--weight_init", "random", "random"),
    ("-nhl", "--num_layers", "1", 1),
    ("-sz", "--hidden_size", "8", 8),
    ("-a", "--activation", "tanh", "tanh"),
]


@pytest.mark.parametrize("form", ["short", "long"])
def test_every_spec_flag_is_accepted(form, tmp_path, mnist_dir):
    args = []
    for short, long, given, _ in SPEC_VALUES:
        args += [short if form == "short" else long, given]
    run_dir = train_ok(tmp_path, *args, *QUIET)
    assert run_dir.name == "hl_1_bs_64_ac_tanh"
    config = summary_of(run_dir)["config"]
    for short, long, _, recorded in SPEC_VALUES:
        assert config[long.lstrip("-")] == recorded, long
        assert getattr(TrainConfig(), long.lstrip("-")) != recorded, f"{long}: a default"


def test_choices_are_case_insensitive_and_recorded_in_spec_spelling(tmp_path):
    run_dir = train_ok(tmp_path, *SMALL, *QUIET, "-a", "relu", "-w_i", "xavier", "-o", "ADAM",
                       "-l", "Cross_Entropy", "-d", "FASHION_MNIST")
    assert run_dir.name == "hl_1_bs_32_ac_ReLU"
    config = summary_of(run_dir)["config"]
    assert (config["activation"], config["weight_init"], config["optimizer"], config["loss"],
            config["dataset"]) == ("ReLU", "Xavier", "adam", "cross_entropy", "fashion_mnist")


def test_help_lists_every_flag_in_spec_spelling():
    outcome = invoke("train", "--help")
    assert outcome.code == 0 and outcome.err == ""
    for short, long, _, _ in SPEC_VALUES:
        assert re.search(rf"^\s+{short}, {long} ", outcome.out, re.M), long
    assert "[identity|sigmoid|tanh|ReLU|GELU|SiLU|LeakyReLU]" in outcome.out
    assert "[random|Xavier|He]" in outcome.out


def test_batch_larger_than_the_training_set_is_one_full_batch(tmp_path):
    run_dir = train_ok(tmp_path, *SMALL, *QUIET, "-b", "100000000")
    assert run_dir.name == "hl_1_bs_100000000_ac_ReLU"
    assert len(metrics_of(run_dir)) == 1


def test_one_width_per_hidden_layer_and_the_layer_count_follows(tmp_path):
    run_dir = train_ok(tmp_path, "-e", "1", "-sz", "48", "24", *QUIET)
    assert run_dir.name == "hl_2_bs_32_ac_ReLU"  # -nhl inferred from the two widths
    layout, _, config, _ = load_model(run_dir / "model.npz")
    assert layout.sizes == (784, 48, 24, 10)
    assert (config["num_layers"], config["hidden_size"]) == (2, [48, 24])
    command = summary_of(run_dir)["train_command"]
    assert " -nhl 2 -sz 48 24 " in command
    rerun = train_ok(tmp_path, *shlex.split(command)[2:], *QUIET)  # the command reproduces it
    assert without_seconds(metrics_of(rerun)) == without_seconds(metrics_of(run_dir))


# ----------------------------------------------------------------------------- learning

def test_learns_mnist_in_one_epoch(tmp_path, mnist_dir):
    run_dir = train_ok(tmp_path, "-d", "mnist", "-e", "1", "-nhl", "1", "-sz", "64", *QUIET)
    assert summary_of(run_dir)["test_accuracy"] > 0.92  # about 0.94


# ----------------------------------------------------------------------------- reproducible

def test_same_flags_and_seed_give_identical_results(tmp_path):
    args = ("-e", "2", "-nhl", "2", "-sz", "16", "--seed", "7", *QUIET)  # QUIET: --threads 1
    first = train_ok(tmp_path, *args)
    second = train_ok(tmp_path, *args)
    assert (first.name, second.name) == ("hl_2_bs_32_ac_ReLU", "hl_2_bs_32_ac_ReLU_2")
    assert without_seconds(metrics_of(first)) == without_seconds(metrics_of(second))
    a, b = summary_of(first), summary_of(second)
    for key in ("test_loss", "test_accuracy", "confusion_matrix", "config"):
        assert a[key] == b[key], key
    params_a, params_b = load_model(first / "model.npz")[1], load_model(second / "model.npz")[1]
    assert params_a.dtype == np.float32 and np.array_equal(params_a, params_b)


# ----------------------------------------------------------------------------- wandb

def test_wandb_offline_writes_an_offline_run(tmp_path):
    train_ok(tmp_path, *SMALL, "--no-progress", "--wandb-mode", "offline")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (history,) = runs[0].glob("*.wandb")
    # the epochs logged while wandb was still starting reached the run, and the test figures
    recorded = history.read_bytes()
    for key in (b"val_accuracy", b"learning_rate", b"test_accuracy"):
        assert key in recorded, key


def test_default_wandb_mode_never_prompts_for_a_login(tmp_path):
    """A terminal on stdin and no API key: wandb would prompt in online mode; the default
    (offline) must finish on its own."""
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "cli.py", "train", *SMALL, "--no-progress",
             "--output-dir", str(tmp_path)],
            cwd=REPO, env=subprocess_env(), stdin=secondary, capture_output=True, text=True,
            timeout=180)
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.returncode == 0, done.stderr
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


# ----------------------------------------------------------------------------- bad input

def _empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["--data-dir", tmp_path / "empty"], ["empty", "train-images-idx3-ubyte.gz"]


def _copy_with(tmp_path, broken_name, content):
    """A Fashion-MNIST data dir: three real files and `broken_name` holding `content`."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for source in DEBIAN_FASHION_MNIST_DIR.iterdir():
        if source.name != broken_name:
            (data_dir / source.name).symlink_to(source)
    (data_dir / broken_name).write_bytes(content)
    return data_dir


def _truncated_gzip(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    real = (DEBIAN_FASHION_MNIST_DIR / name).read_bytes()
    data_dir = _copy_with(tmp_path, name, real[:len(real) // 2])
    return ["--data-dir", data_dir], [str(data_dir / name), "truncated"]


def _short_idx_payload(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress((DEBIAN_FASHION_MNIST_DIR / name).read_bytes())
    data_dir = _copy_with(tmp_path, name, gzip.compress(raw[:-100]))
    return ["--data-dir", data_dir], [str(data_dir / name), "truncated"]


# (id, extra args, fragments the error line must contain); for the data cases a function
# tmp_path -> (args, fragments) builds the broken data directory first.
BAD_INPUT = [
    ("batch-size-0", ["-b", "0"], ["-b/--batch_size"]),
    ("epochs-0", ["-e", "0"], ["-e/--epochs"]),
    ("lr-negative", ["-lr", "-1"], ["-lr/--learning_rate"]),
    ("lr-nan", ["-lr", "nan"], ["-lr/--learning_rate"]),
    ("layers-negative", ["-nhl", "-1"], ["-nhl/--num_layers"]),
    ("hidden-size-0", ["-sz", "0"], ["-sz/--hidden_size"]),
    ("epsilon-0", ["-eps", "0"], ["-eps/--epsilon"]),
    ("optimizer-adamax", ["-o", "adamax"], ["--optimizer", "adamax"]),
    ("activation-swish", ["-a", "swish"], ["--activation", "swish", "ReLU", "GELU"]),
    ("dataset-cifar", ["-d", "cifar"], ["--dataset", "cifar"]),
    ("epochs-abc", ["-e", "abc"], ["--epochs", "abc"]),
    ("unknown-flag", ["--colour", "blue"], ["--colour"]),
    ("missing-value", ["-lr"], ["-lr"]),
    ("hidden-size-too-big-for-memory", ["-sz", "2000000000"], ["memory", "-sz/--hidden_size"]),
    ("wandb-online-without-credentials", ["--wandb-mode", "online"], ["wandb", "credentials"]),
    ("empty-data-dir", _empty_dir, None),
    ("truncated-gzip", _truncated_gzip, None),
    ("short-idx-payload", _short_idx_payload, None),
]


@pytest.mark.parametrize("args, fragments", [case[1:] for case in BAD_INPUT],
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_one_error_line_and_no_run(args, fragments, tmp_path):
    if callable(args):
        args, fragments = args(tmp_path)
    output_dir = tmp_path / "runs"
    outcome = train(output_dir, *SMALL, *QUIET, *args)
    assert_one_error_line(outcome, *fragments)
    assert outcome.out == ""
    assert not output_dir.exists() or not any(output_dir.iterdir())


def test_divergence_is_one_error_line_and_no_results(tmp_path):
    outcome = train(tmp_path, "-e", "2", "-nhl", "1", "-sz", "16", "-o", "sgd", "-lr", "1e6",
                    "-a", "identity", "--no-progress", "--no-plots")  # wandb: offline
    assert_one_error_line(outcome, "diverged")
    assert outcome.code == 1
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("model.npz"))


# ----------------------------------------------------------------------------- progress

def test_non_tty_default_prints_plain_epoch_lines(tmp_path):
    outcome = train(tmp_path, *SMALL, "--wandb-mode", "disabled", "--no-plots")
    assert outcome.code == 0, outcome.err
    assert [EPOCH_LINE.match(line).groups() for line in outcome.err_lines] == [("1", "1")]


def test_progress_draws_a_rich_bar(tmp_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the captured stderr as a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    outcome = train(tmp_path, *SMALL, "--wandb-mode", "disabled", "--no-plots", "--progress")
    assert outcome.code == 0, outcome.err
    assert "━" in outcome.err and "epoch 1/1" in outcome.err
    last_line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", outcome.err_lines[-1])  # bar erased
    assert EPOCH_LINE.match(last_line), last_line


# ----------------------------------------------------------------------------- real programs

def test_console_script_and_cli_py_show_help():
    script = shutil.which("fastmlp")
    assert script, "the fastmlp console script is not on PATH (pip install -e .)"
    for command in ([script, "--help"], [sys.executable, "cli.py", "train", "--help"]):
        done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    assert "--weight_init" in done.stdout and "--hidden_size" in done.stdout


def test_console_script_bad_flag_is_one_line(tmp_path):
    done = subprocess.run(["fastmlp", "train", "--bogus", "--output-dir", str(tmp_path / "runs")],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "--bogus" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_threads_1_keeps_every_thread_pool_to_one_core(small_fashion, tmp_path):
    """--threads N bounds Numba's threads and every BLAS pool (NumPy's, and SciPy's that the
    kernels call) from the process's start: the whole run's user CPU time is at most N times
    its wall time (OpenBLAS's threads, started when it loads, would spin past it)."""
    import resource
    import time

    command = [sys.executable, str(REPO / "cli.py"), "train", "-e", "2", "-nhl", "2", "-sz",
               "512", "-a", "sigmoid", "--threads", "1", "--data-dir", str(small_fashion),
               "--output-dir", str(tmp_path), *QUIET[:-2]]
    env = {name: value for name, value in subprocess_env().items()
           if name != "OPENBLAS_NUM_THREADS"}  # as a user starts it
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    wall = time.perf_counter() - start
    user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before.ru_utime
    assert done.returncode == 0, done.stderr
    assert user <= wall, f"user {user:.2f} s in {wall:.2f} s of wall time"


def test_training_loads_its_blas_without_the_scipy_linalg_package(small_fashion, tmp_path):
    """Start-up: the BLAS the kernels call (SciPy's OpenBLAS, reached through the module
    scipy.linalg.cython_blas) is loaded on its own, without scipy.linalg's package (0.2-0.3
    s of imports that training never uses); the run still trains on it, --threads still
    limits it, and `import scipy.linalg` still works afterwards."""
    script = f"""
import sys
sys.argv = ["fastmlp", "train", *{[*SMALL, "--data-dir", str(small_fashion),
                                    "--output-dir", str(tmp_path), *QUIET]!r}]
from cli import main
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(name for name in sys.modules if name.startswith("scipy.linalg")))
from threadpoolctl import threadpool_info
print(sorted(pool["num_threads"] for pool in threadpool_info()
             if pool["internal_api"] == "openblas" and "scipy.libs" in pool["filepath"]))
import numpy as np, scipy.linalg
print(scipy.linalg.solve(np.eye(2), np.ones(2)).tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    modules, kernel_blas, solved = done.stdout.splitlines()[-3:]
    assert modules == "['scipy.linalg.cython_blas']"
    assert kernel_blas == "[1]"  # loaded, and held to --threads 1
    assert solved == "[1.0, 1.0]"
    assert len(list(tmp_path.glob("*/summary.json"))) == 1


def test_epochs_hold_the_kernels_blas_to_one_thread_and_give_it_back():
    """The block every threaded epoch and evaluation runs in: the BLAS the kernels call runs
    on one thread inside it (each Numba thread has its own share of the batch), as it was
    after it; the libraries are looked up once, so the second block must work the same."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from fastmlp.engine import load_kernel_blas, single_threaded_blas

    def kernel_blas_threads():
        return [pool["num_threads"] for pool in threadpool_info()
                if pool["internal_api"] == "openblas" and "scipy.libs" in pool["filepath"]]

    load_kernel_blas()
    with threadpool_limits(limits=2, user_api="blas"):
        before = kernel_blas_threads()
        assert len(before) == 1
        for _ in range(2):
            with single_threaded_blas(True):
                assert kernel_blas_threads() == [1]
            assert kernel_blas_threads() == before
        with single_threaded_blas(False):  # one thread of Numba's: BLAS keeps its threads
            assert kernel_blas_threads() == before


def test_result_files_get_the_mode_of_any_new_file(tmp_path):
    """Written through a temp file and a rename, yet as readable as the umask allows (not
    the temp file's owner-only 0600)."""
    run_dir = train_ok(tmp_path, *SMALL, *QUIET)
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("summary.json", "model.npz", "metrics.jsonl"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
