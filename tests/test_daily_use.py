"""Using trained models day to day: `fastmlp evaluate`, `fastmlp predict`, `fastmlp samples`,
the pictures a run leaves in its directory (and in wandb), and the model file format.

One shared 2-epoch run on a 2,000-image slice of Fashion-MNIST (real data, real kernels,
wandb offline); everything else reads its model.npz. In-process `cli.main` calls.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clirunner import SMALL_FASHION, invoke, summary_of, train_ok
from fastmlp import data
from fastmlp.config import TrainConfig
from fastmlp.data import scale_pixels
from fastmlp.inference import evaluate_model, predict
from fastmlp.model import MODEL_FORMAT_VERSION, Layout, load_model, save_model
from fastmlp.engine import evaluate_params

N_TRAIN, N_TEST = SMALL_FASHION
RUN = ("-e", "2", "-nhl", "1", "-sz", "32", "-b", "32", "--seed", "3", "--no-progress")
RUN_NAME = "hl_1_bs_32_ac_ReLU"
FASHION = data.CLASS_NAMES["fashion_mnist"]


# isolated caches and wandb state for every test here
pytestmark = pytest.mark.usefixtures("fastmlp_env")


def png_size(path: Path) -> tuple:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def run(small_fashion, tmp_path_factory) -> Path:
    """A finished run, logged to wandb offline; returns its run directory."""
    run_dir = train_ok(tmp_path_factory.mktemp("runs"), *RUN, "--data-dir", small_fashion)
    assert run_dir.name == RUN_NAME
    return run_dir


@pytest.fixture(scope="module")
def test_set(small_fashion):
    dataset = data.load_dataset("fashion_mnist", small_fashion)
    return dataset.x_test, dataset.y_test.astype(np.int64)


# ----------------------------------------------------------------------------- run pictures

def test_run_leaves_learning_curves_and_confusion_matrix(run):
    names = {p.name for p in run.iterdir()}
    assert names == {"metrics.jsonl", "model.npz", "summary.json",  # no checkpoint: finished
                     "learning_curves.png", "confusion_matrix.png"}
    assert png_size(run / "learning_curves.png") == (1000, 400)
    assert png_size(run / "confusion_matrix.png") == (850, 750)


def test_run_pictures_are_logged_to_wandb(run):
    offline_runs = list((run.parent / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    images = {p.name.split("_")[0] for p in offline_runs[0].rglob("media/images/*.png")}
    assert {"learning", "confusion"} <= images, images


def test_no_plots_draws_nothing(small_fashion, tmp_path):
    outcome = invoke("train", "-e", "1", "-nhl", "0", "--data-dir", small_fashion, "--output-dir",
                     tmp_path, "--wandb-mode", "disabled", "--no-progress", "--no-plots")
    assert outcome.code == 0, outcome.err
    assert not list(tmp_path.rglob("*.png"))


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_gives_the_runs_test_results(run, small_fashion):
    summary = summary_of(run)
    outcome = invoke("evaluate", run / "model.npz", "--data-dir", small_fashion)
    assert outcome.code == 0, outcome.err
    assert outcome.err == ""
    assert (f"fashion_mnist test set: {N_TEST} images  loss {summary['test_loss']:.4f}  "
            f"accuracy {summary['test_accuracy']:.4f}") in outcome.out
    assert "784-32-10 ReLU, trained on fashion_mnist" in outcome.out
    assert "per-class accuracy" in outcome.out and "confusion matrix" in outcome.out
    plot = run / "evaluate_fashion_mnist_confusion_matrix.png"
    assert f"confusion matrix -> {plot}" in outcome.out
    assert png_size(plot) == (850, 750)
    matrix = np.array(summary["confusion_matrix"])
    for index, name in enumerate(FASHION):  # per-class rows: images, correct, accuracy
        row = f"{index} {name}"
        line = next(l for l in outcome.out.splitlines() if row in l and "│" in l)
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if cells[1:4] == [str(matrix[index].sum()), str(matrix[index, index]),
                          f"{matrix[index, index] / matrix[index].sum():.4f}"]:
            continue
        raise AssertionError(f"per-class row for {name}: {line}")


def test_evaluate_numbers(run, small_fashion, test_set):
    summary = summary_of(run)
    result = evaluate_model(run / "model.npz", data_dir=small_fashion)
    assert result.dataset == "fashion_mnist" and result.class_names == FASHION
    assert result.accuracy == summary["test_accuracy"]
    assert result.loss == pytest.approx(summary["test_loss"], rel=1e-6)
    assert result.matrix.tolist() == summary["confusion_matrix"]
    assert result.count == N_TEST
    assert result.per_class_accuracy == pytest.approx(
        np.diag(result.matrix) / result.matrix.sum(axis=1))


def test_evaluate_on_another_dataset_and_custom_plot_path(run, mnist_dir, tmp_path):
    plot = tmp_path / "mnist.png"
    outcome = invoke("evaluate", run / "model.npz", "-d", "MNIST", "--data-dir", mnist_dir,
                     "--plot", plot)
    assert outcome.code == 0, outcome.err
    assert "mnist test set: 10000 images" in outcome.out
    assert png_size(plot) == (850, 750)
    assert not (run / "evaluate_mnist_confusion_matrix.png").exists()


# ----------------------------------------------------------------------------- predict

def test_predict_idx_agrees_with_the_evaluation_kernel(run, small_fashion, test_set):
    x_test, y_test = test_set
    layout, params, config, _ = load_model(run / "model.npz")
    _, _, kernel_predictions = evaluate_params(params, layout, scale_pixels(x_test, params.dtype),
                                               y_test, TrainConfig.from_saved(config))
    images = small_fashion / "t10k-images-idx3-ubyte"
    outcome = invoke("predict", run / "model.npz", images, "--top-k", "3")
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert len(lines) == N_TEST
    predicted = []
    for index, line in enumerate(lines):
        fields = line.split("\t")
        assert fields[0] == f"{images}[{index}]"
        names, probs = fields[1::2], [float(p) for p in fields[2::2]]
        assert len(names) == 3 and set(names) <= set(FASHION)
        assert probs == sorted(probs, reverse=True) and 0 <= sum(probs) <= 1.0001
        predicted.append(FASHION.index(names[0]))
    assert (np.array(predicted) == kernel_predictions).mean() > 0.995


def test_predict_probabilities_sum_to_one(run, small_fashion):
    [prediction] = predict(run / "model.npz", [small_fashion / "t10k-images-idx3-ubyte"],
                           top_k=10)[:1]
    assert sum(p for _, p in prediction.classes) == pytest.approx(1.0)
    assert sorted(name for name, _ in prediction.classes) == sorted(FASHION)


def test_predict_png_images(run, test_set, tmp_path):
    x_test, _ = test_set
    model = run / "model.npz"
    idx = tmp_path / "images.idx"
    idx.write_bytes((0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big")
                                                          for d in (20, 28, 28))
                    + x_test[:20].tobytes())
    from_idx = predict(model, [idx], top_k=2)
    confident = [i for i, p in enumerate(from_idx) if p.classes[0][1] > 0.9][:3]
    assert confident, "the model should be sure of some of the first 20 test images"
    for i in confident:
        pixels = x_test[i].reshape(28, 28)
        exact = tmp_path / f"{i}.png"
        Image.fromarray(pixels, "L").save(exact)
        inverted = tmp_path / f"{i}-dark-on-light.png"  # auto-inverted back
        Image.fromarray(255 - pixels, "L").save(inverted)
        big_rgb = tmp_path / f"{i}-rgb-112.png"  # resized and made gray
        Image.fromarray(pixels, "L").resize((112, 112), Image.Resampling.NEAREST) \
            .convert("RGB").save(big_rgb)
        got = predict(model, [exact, inverted, big_rgb], top_k=2)
        assert [p.source for p in got] == [str(exact), str(inverted), str(big_rgb)]
        for same in got[:2]:  # equal up to float32 rounding (a batch of 1 vs 20)
            assert [n for n, _ in same.classes] == [n for n, _ in from_idx[i].classes]
            assert [p for _, p in same.classes] == pytest.approx(
                [p for _, p in from_idx[i].classes], abs=1e-5)
        assert got[2].classes[0][0] == from_idx[i].classes[0][0]
    kept = predict(model, [inverted], invert=False)[0]  # --no-invert: taken as it is
    assert kept.classes[0] != got[1].classes[0]


def test_predict_cli_png_line(run, test_set, tmp_path):
    x_test, _ = test_set
    path = tmp_path / "shoe.png"
    Image.fromarray(x_test[0].reshape(28, 28), "L").save(path)
    outcome = invoke("predict", run / "model.npz", path)
    assert outcome.code == 0, outcome.err
    source, name, probability = outcome.out.rstrip("\n").split("\t")
    assert source == str(path) and name in FASHION and 0 < float(probability) <= 1


# ----------------------------------------------------------------------------- samples

def test_samples_png_and_wandb(small_fashion, tmp_path):
    outcome = invoke("samples", "-d", "fashion_mnist", "--data-dir", small_fashion,
                     "--output-dir", tmp_path)
    assert outcome.code == 0, outcome.err
    path = tmp_path / "samples_fashion_mnist.png"
    assert outcome.out.strip() == f"one image per class -> {path}"
    assert png_size(path) == (1000, 460)
    [offline_run] = (tmp_path / "wandb").glob("offline-run-*")
    logged = list(offline_run.rglob("media/images/*.png"))
    assert len(logged) == 1 + 10  # the grid and one captioned image per class


def test_samples_disabled_wandb(small_fashion, tmp_path):
    outcome = invoke("samples", "--data-dir", small_fashion, "--output-dir", tmp_path,
                     "--wandb-mode", "disabled")
    assert outcome.code == 0, outcome.err
    assert {p.name for p in tmp_path.iterdir()} == {"samples_fashion_mnist.png"}


def test_samples_show_one_image_of_each_class(small_fashion):
    from fastmlp.plots import one_per_class

    dataset = data.load_dataset("fashion_mnist", small_fashion)
    indices = one_per_class(dataset.y_train, 10)
    assert dataset.y_train[indices].tolist() == list(range(10))
    assert all((dataset.y_train[:i] != dataset.y_train[i]).all() for i in indices)


# ----------------------------------------------------------------------------- model files

def test_model_file_carries_format_version_and_architecture(run):
    with np.load(run / "model.npz") as stored:
        assert int(stored["format_version"]) == MODEL_FORMAT_VERSION
        assert stored["sizes"].tolist() == [784, 32, 10]
        assert str(stored["activation"]) == "ReLU" and str(stored["loss"]) == "cross_entropy"
        assert json.loads(str(stored["config_json"]))["hidden_size"] == 32
    layout, params, config, class_names = load_model(run / "model.npz")
    assert layout == Layout((784, 32, 10)) and params.shape == (layout.num_params,)
    assert class_names == FASHION


def test_model_file_round_trip(tmp_path):
    layout = Layout((784, 5, 3, 10))
    params = np.random.default_rng(0).normal(size=layout.num_params).astype(np.float64)
    config = {"activation": "tanh", "loss": "mean_squared_error", "dataset": "mnist"}
    save_model(tmp_path / "m.npz", layout, params, config, [str(d) for d in range(10)])
    got_layout, got_params, got_config, names = load_model(tmp_path / "m.npz")
    assert got_layout == layout and got_params.dtype == np.float64
    assert np.array_equal(got_params, params) and got_config == config
    assert names == tuple(str(d) for d in range(10))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left
