"""--ensemble K: K networks trained side by side (member k with seed --seed + k), their
outputs averaged by train's validation and test, evaluate, predict, export and the
estimators; K=1 is the single network of before, file for file.

Small data: the 2,000-image slice of Fashion-MNIST, scikit-learn's diabetes table and
synthetic arrays; real kernels, in-process `cli.main` calls."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from sklearn.datasets import load_diabetes, make_classification

from clirunner import invoke, metrics_of, summary_of, train_ok, without_seconds
from fastmlp import MLPClassifier, MLPRegressor, reference
from fastmlp.config import TrainConfig
from fastmlp.engine import output_loss, score_params
from fastmlp.errors import ModelFileError
from fastmlp.inference import open_model, predict
from fastmlp.kernels.interface import LOSS_TASK, LOSSES
from fastmlp.model import Layout, init_params, load_model, save_model
from test_daily_resume import interrupt_after_epoch

pytestmark = pytest.mark.usefixtures("fastmlp_env")

RUN = ("-e", "2", "-nhl", "1", "-sz", "16", "-b", "64", "--seed", "5", "--wandb-mode",
       "disabled", "--no-plots", "--no-progress", "--threads", "2")
RUN_NAME = "hl_1_bs_64_ac_ReLU"


def twin_outputs(model, x) -> np.ndarray:
    """The mean of the members' outputs by the NumPy twin, in float64."""
    members = model.params if model.params.ndim == 2 else model.params[None]
    outputs = [reference.predict(model.layout.views(member.astype(np.float64)),
                                 x.astype(np.float64), model.activation, model.settings.loss)[0]
               for member in members]
    return np.mean(outputs, axis=0)


@pytest.fixture(scope="module")
def single(small_fashion, tmp_path_factory):
    """The K=1 run (--keep last: member 0 of an ensemble must be this run's last epoch)."""
    return train_ok(tmp_path_factory.mktemp("single"), *RUN, "--keep", "last",
                    "--data-dir", small_fashion)


@pytest.fixture(scope="module")
def ensemble(small_fashion, tmp_path_factory):
    return train_ok(tmp_path_factory.mktemp("ensemble"), *RUN, "--keep", "last",
                    "--ensemble", "3", "--data-dir", small_fashion)


@pytest.fixture(scope="module")
def test_images(small_fashion):
    from fastmlp import data

    images = data.read_idx(small_fashion / "t10k-images-idx3-ubyte")
    return data.scale_pixels(images.reshape(len(images), -1), np.float32)


def test_one_member_is_the_single_network_of_before(single, small_fashion, tmp_path):
    again = train_ok(tmp_path, *RUN, "--keep", "last", "--ensemble", "1",
                     "--data-dir", small_fashion)
    with np.load(single / "model.npz") as a, np.load(again / "model.npz") as b:
        assert int(a["format_version"]) == 2 and a["params"].ndim == 1
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if key != "config_json":  # it names its --output-dir
                assert np.array_equal(a[key], b[key]), key
    assert without_seconds(metrics_of(single)) == without_seconds(metrics_of(again))
    summary = summary_of(single)
    assert "--ensemble" not in summary["train_command"]
    assert summary["config"]["ensemble"] == 1


def test_three_members_train_evaluate_predict_and_export(single, ensemble, test_images,
                                                        small_fashion, tmp_path):
    summary = summary_of(ensemble)
    assert summary["config"]["ensemble"] == 3 and "--ensemble 3" in summary["train_command"]
    with np.load(ensemble / "model.npz") as saved:
        assert int(saved["format_version"]) == 3
    model = open_model(ensemble / "model.npz")
    layout, members = model.layout, model.params
    assert members.shape == (3, layout.num_params) and model.members == 3
    assert summary["num_params"] == 3 * layout.num_params
    # member 0 is the single run, bit for bit; the others were drawn from other seeds
    assert np.array_equal(members[0], open_model(single / "model.npz").params)
    assert not np.array_equal(members[1], members[0])
    assert not np.array_equal(members[2], members[1])

    # the outputs are the members' mean (the NumPy twin's), the test figures are theirs
    outputs = model.outputs(test_images)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, twin_outputs(model, test_images), atol=1e-5)
    outcome = invoke("evaluate", ensemble / "model.npz", "--data-dir", small_fashion)
    assert outcome.code == 0, outcome.err
    assert "an ensemble of 3 x 784-16-10 ReLU" in outcome.out
    assert (f"loss {summary['test_loss']:.4f}  accuracy {summary['test_accuracy']:.4f}"
            in outcome.out)

    # predict: the averaged probabilities, most likely class first
    predictions = predict(ensemble / "model.npz", [small_fashion / "t10k-images-idx3-ubyte"],
                          top_k=2)
    assert len(predictions) == len(test_images)
    best = outputs.argmax(axis=1)
    for row in (0, 1, 250, len(test_images) - 1):
        (name, p), _ = predictions[row].classes
        assert name == model.class_names[best[row]]
        assert p == pytest.approx(float(outputs[row, best[row]]), abs=1e-6)

    # export: one graph, every member, a Mean node; onnxruntime agrees with predict
    outcome = invoke("export", ensemble / "model.npz", tmp_path / "e.onnx")
    assert outcome.code == 0, outcome.err
    graph = onnx.load(tmp_path / "e.onnx")
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("Gemm") == 6 and ops.count("Softmax") == 3 and ops.count("Mean") == 1
    assert {p.key: p.value for p in graph.metadata_props}["ensemble"] == "3"
    session = onnxruntime.InferenceSession(str(tmp_path / "e.onnx"),
                                           providers=["CPUExecutionProvider"])
    probabilities, label = session.run(["probabilities", "label"], {"input": test_images})
    assert np.abs(probabilities - outputs).max() < 1e-5
    np.testing.assert_array_equal(label, best)


def test_the_test_loss_is_that_of_the_averaged_probabilities(ensemble, small_fashion):
    """evaluate's figures from the model file: the cross-entropy of the members' mean."""
    from fastmlp import data

    model = open_model(ensemble / "model.npz")
    x = data.read_idx(small_fashion / "t10k-images-idx3-ubyte")
    y = data.read_idx(small_fashion / "t10k-labels-idx1-ubyte").astype(np.int64)
    x = data.scale_pixels(x.reshape(len(x), -1), np.float32)
    mean = twin_outputs(model, x)
    expected = -np.log(mean[np.arange(len(y)), y]).mean()
    assert summary_of(ensemble)["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_a_regression_ensemble_exports_one_graph_that_predict_agrees_with(tmp_path):
    frame = load_diabetes(as_frame=True).frame
    csv = tmp_path / "diabetes.csv"
    frame.to_csv(csv, index=False)
    run_dir = train_ok(tmp_path / "runs", "--data", csv, "--target", "target", "-e", "3",
                       "-nhl", "1", "-sz", "16", "-b", "32", "--ensemble", "3",
                       "--wandb-mode", "disabled", "--no-progress", "--no-plots")
    model = open_model(run_dir / "model.npz")
    assert model.params.shape[0] == 3 and model.target_scaling is not None
    predictions = predict(run_dir / "model.npz", [csv])
    values = np.array([[value for _, value in p.classes] for p in predictions])
    outcome = invoke("export", run_dir / "model.npz", tmp_path / "r.onnx")
    assert outcome.code == 0, outcome.err
    session = onnxruntime.InferenceSession(str(tmp_path / "r.onnx"),
                                           providers=["CPUExecutionProvider"])
    (graph_values,) = session.run(["values"], {"input": load_diabetes().data.astype(np.float32)})
    assert graph_values.shape == values.shape == (442, 1)
    assert np.abs(graph_values - values).max() <= 1e-5 * np.abs(values).max()
    outcome = invoke("evaluate", run_dir / "model.npz")
    assert outcome.code == 0, outcome.err
    assert f"rmse {summary_of(run_dir)['test_rmse']:.4f}" in outcome.out


def test_an_interrupted_ensemble_resumes_exactly(small_fashion, tmp_path, monkeypatch):
    """K=2 with dropout (each member its own draws) and the default --keep best: a run
    interrupted after epoch 1 and resumed ends bit for bit as the uninterrupted one; the
    same seed and threads give the same numbers."""
    args = ("train", *RUN, "--ensemble", "2", "--dropout", "0.2", "-e", "3",
            "--data-dir", small_fashion)
    assert invoke(*args, "--output-dir", tmp_path / "whole").code == 0
    assert invoke(*args, "--output-dir", tmp_path / "again").code == 0
    interrupt_after_epoch(monkeypatch, 1)
    assert invoke(*args, "--output-dir", tmp_path / "parts").code == 130
    monkeypatch.undo()
    from fastmlp.rundir import load_checkpoint

    checkpoint = load_checkpoint(tmp_path / "parts" / RUN_NAME)
    assert checkpoint.params.shape[0] == 2 and len(checkpoint.rng_state) == 2
    resumed = invoke("train", "--resume", tmp_path / "parts" / RUN_NAME, "--no-progress")
    assert resumed.code == 0, resumed.err
    runs = [tmp_path / name / RUN_NAME for name in ("whole", "again", "parts")]
    params = [load_model(run / "model.npz")[1] for run in runs]
    assert params[0].shape[0] == 2
    assert params[1].tobytes() == params[0].tobytes() == params[2].tobytes()
    records = [without_seconds(metrics_of(run)) for run in runs]
    assert records[0] == records[1] == records[2]
    tests = [{k: v for k, v in summary_of(run).items() if k.startswith("test_")} for run in runs]
    assert tests[0] == tests[1] == tests[2]


@pytest.mark.parametrize("loss", LOSSES)
def test_the_numpy_loss_of_outputs_is_the_kernels_loss(loss):
    """One network as a one-member ensemble, (1, P): its loss comes from output_loss on the
    averaged outputs, which must equal the compiled pass's loss of the same network."""
    rng = np.random.default_rng(0)
    task = LOSS_TASK[loss]
    config = TrainConfig(task=task, loss=loss, dtype="float64", huber_delta=0.5).validated()
    layout = Layout((6, 5, 3))
    params = init_params(layout, "Xavier", rng, np.float64)
    x = rng.normal(size=(40, 6))
    y = {"classification": rng.integers(0, 3, 40),
         "multilabel": (rng.random((40, 3)) > 0.5).astype(np.float64),
         "regression": rng.random((40, 3)) * 2}[task]
    weights = rng.random(40) + 0.5
    kernel = score_params(params, layout, x, y, config, weights)["loss"]
    averaged = score_params(params[None], layout, x, y, config, weights)["loss"]
    assert averaged == pytest.approx(kernel, rel=1e-9, abs=1e-12)


def test_an_ensemble_model_file_is_refused_as_one_network(tmp_path):
    """A (K, P) model file says format version 3; one that claims version 2 (what an older
    fastmlp writes) with (K, P) parameters is refused, never read as member 0."""
    layout = Layout((4, 3, 2))
    params = np.stack([init_params(layout, "Xavier", np.random.default_rng(k), np.float32)
                       for k in range(2)])
    config = dict(TrainConfig(ensemble=2).validated().to_dict())
    save_model(tmp_path / "m.npz", layout, params, config, ["a", "b"])
    assert load_model(tmp_path / "m.npz")[1].shape == (2, layout.num_params)
    with np.load(tmp_path / "m.npz") as saved:
        arrays = dict(saved)
    np.savez(tmp_path / "old.npz", **dict(arrays, format_version=np.int64(2)))
    with pytest.raises(ModelFileError, match=r"\[2, 23\] parameters.*needs 23 float32"):
        load_model(tmp_path / "old.npz")


# ----------------------------------------------------------------------------- estimators

def test_an_estimator_ensemble_is_the_mean_of_separate_fits():
    """ensemble=3, random_state=r: member k is the fit with random_state r + k, bit for bit;
    predict_proba is the mean of the three fits' probabilities."""
    X, y = make_classification(300, 8, n_informative=5, n_classes=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached
        ensemble = MLPClassifier((16,), max_iter=4, batch_size=32, random_state=3,
                                 ensemble=3).fit(X, y)
        singles = [MLPClassifier((16,), max_iter=4, batch_size=32, random_state=3 + k).fit(X, y)
                   for k in range(3)]
    for member, single in zip(ensemble.coefs_, singles):
        assert all(np.array_equal(a, b) for a, b in zip(member, single.coefs_))
    probabilities = ensemble.predict_proba(X)
    mean = np.mean([single.predict_proba(X).astype(np.float64) for single in singles], axis=0)
    np.testing.assert_allclose(probabilities, mean, atol=1e-6)
    np.testing.assert_array_equal(ensemble.predict(X), ensemble.classes_[mean.argmax(axis=1)])
    assert ensemble.loss_curve_[-1] == pytest.approx(
        np.mean([single.loss_curve_[-1] for single in singles]))


def test_an_estimator_ensemble_regresses_exports_and_refuses_bad_values(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = dict(hidden_layer_sizes=(8,), max_iter=60, learning_rate_init=0.02,
                        random_state=0)
        model = MLPRegressor(**settings, ensemble=2, early_stopping=True,
                             n_iter_no_change=3).fit(X, y)
        alone = MLPRegressor(**settings).fit(X, y)
    assert len(model.coefs_) == 2 and model.predict(X).shape == (120,)
    assert model.score(X, y) > 0.5 and model.best_validation_score_ is not None
    assert not np.allclose(model.predict(X), alone.predict(X))
    model.to_onnx(tmp_path / "r.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "r.onnx"),
                                           providers=["CPUExecutionProvider"])
    (values,) = session.run(["values"], {"input": X.astype(np.float32)})
    np.testing.assert_allclose(values.ravel(), model.predict(X.astype(np.float32)), atol=1e-5)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="ensemble="):
            MLPRegressor(ensemble=bad, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="ensemble=3, the fitted model has 2 members"):
        model.set_params(ensemble=3, warm_start=True).fit(X, y)
