"""`fastmlp export MODEL.npz model.onnx`: the ONNX graph computes what fastmlp computes.

For every activation a tiny model (1 epoch on 2,000 images) is exported and run with
onnxruntime on the whole Fashion-MNIST test set: the same class for every image, the
probabilities within 1e-5 of fastmlp's (LeakyReLU with a slope that is not the default)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from clirunner import invoke
from fastmlp import data
from fastmlp.inference import open_model
from fastmlp.kernels.interface import ACTIVATIONS

pytestmark = pytest.mark.usefixtures("fastmlp_env")


@pytest.fixture(scope="module")
def test_images(fashion_dir):
    images = data.read_idx(fashion_dir / data.FILES["x_test"])
    return data.scale_pixels(images.reshape(len(images), -1), np.float32)


# the operators each activation becomes (opset 17 has no Gelu: it is composed with Erf)
ACTIVATION_OPS = {"identity": set(), "sigmoid": {"Sigmoid"}, "tanh": {"Tanh"}, "ReLU": {"Relu"},
                  "GELU": {"Erf", "Div", "Add", "Mul"}, "SiLU": {"Sigmoid", "Mul"},
                  "LeakyReLU": {"LeakyRelu"}}
SLOPE = 0.2  # LeakyReLU's, not the default: the model file and the graph must carry it


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_runtime_agrees_with_fastmlp(activation, small_fashion, test_images, tmp_path):
    slope = ["--leaky-slope", SLOPE] if activation == "LeakyReLU" else []
    outcome = invoke("train", "-e", "1", "-nhl", "2", "-sz", "32", "16", "-a", activation,
                     *slope, "--data-dir", small_fashion, "--output-dir", tmp_path,
                     "--wandb-mode", "disabled", "--no-progress", "--no-plots")
    assert outcome.code == 0, outcome.err
    model_path = next(tmp_path.glob("*/model.npz"))
    onnx_path = tmp_path / "model.onnx"
    outcome = invoke("export", model_path, onnx_path)
    assert outcome.code == 0, outcome.err
    assert str(onnx_path) in outcome.out

    graph = onnx.load(onnx_path)
    onnx.checker.check_model(graph)
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("Gemm") == 3 and "Softmax" in ops
    assert set(ops) - {"Gemm", "Softmax", "ArgMax"} == ACTIVATION_OPS[activation]
    props = {p.key: p.value for p in graph.metadata_props}
    names = json.loads(props["class_names"])
    assert names == list(data.REGISTRY["fashion_mnist"].class_names)
    assert props["activation"] == activation
    if activation == "LeakyReLU":
        alphas = [attribute.f for node in graph.graph.node if node.op_type == "LeakyRelu"
                  for attribute in node.attribute if attribute.name == "alpha"]
        assert alphas == [pytest.approx(SLOPE)] * 2 and float(props["leaky_slope"]) == SLOPE

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"], {"input": test_images})
    mine = open_model(model_path).probabilities(test_images)
    assert probabilities.shape == mine.shape == (10000, 10)
    np.testing.assert_array_equal(labels, mine.argmax(axis=1))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), mine.argmax(axis=1))
    assert np.abs(probabilities - mine).max() < 1e-5


def _trained_and_exported(small_fashion, tmp_path, *flags):
    """(model.npz, model.onnx, the checked graph) of a one-epoch `fastmlp train` with flags."""
    outcome = invoke("train", "-e", "1", *flags, "--data-dir", small_fashion, "--output-dir",
                     tmp_path, "--wandb-mode", "disabled", "--no-progress", "--no-plots")
    assert outcome.code == 0, outcome.err
    model_path = next(tmp_path.glob("*/model.npz"))
    onnx_path = tmp_path / "model.onnx"
    assert invoke("export", model_path, onnx_path).code == 0
    graph = onnx.load(onnx_path)
    onnx.checker.check_model(graph)
    return model_path, onnx_path, graph


@pytest.mark.parametrize("norm,op,inputs", [
    ("layer", "LayerNormalization", ("gamma", "beta")),
    ("batch", "BatchNormalization", ("gamma", "beta", "mean", "var"))])
def test_a_normed_net_exports_its_normalisation(small_fashion, test_images, tmp_path, norm, op,
                                                inputs):
    """--norm: the graph has a LayerNormalization (or BatchNormalization with the running
    statistics) after each hidden Gemm, its vectors the model's, and agrees with fastmlp
    to 1e-5."""
    model_path, onnx_path, graph = _trained_and_exported(
        small_fashion, tmp_path, "-nhl", "2", "-sz", "32", "16", "--norm", norm, "-a", "GELU")
    norms = [node for node in graph.graph.node if node.op_type == op]
    assert [list(node.input) for node in norms] == [
        [f"z{l}", *(f"{name}{l}" for name in inputs)] for l in range(2)]
    model = open_model(model_path)
    stored = {tensor.name: onnx.numpy_helper.to_array(tensor)
              for tensor in graph.graph.initializer}
    for l, layer in enumerate(model.layout.views(model.params)[:2]):
        np.testing.assert_array_equal(stored[f"gamma{l}"], layer[2])
        np.testing.assert_array_equal(stored[f"beta{l}"], layer[3])
    assert not np.array_equal(stored["gamma0"], np.ones(32))  # trained, not the start
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probabilities, = session.run(["probabilities"], {"input": test_images})
    assert np.abs(probabilities - model.probabilities(test_images)).max() < 1e-5


def test_a_residual_net_exports_its_skips(small_fashion, test_images, tmp_path):
    """--residual: the graph adds each skip (one here: 32 to 32) after the activation, and
    agrees with fastmlp; a plain net of the same widths predicts otherwise."""
    model_path, onnx_path, graph = _trained_and_exported(
        small_fashion, tmp_path, "-nhl", "3", "-sz", "32", "32", "16", "--residual",
        "--dropout", "0.1")
    adds = [node for node in graph.graph.node if node.op_type == "Add"]
    assert [node.input for node in adds] == [["a1", "a0"]]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probabilities, = session.run(["probabilities"], {"input": test_images})
    model = open_model(model_path)
    mine = model.probabilities(test_images)
    assert np.abs(probabilities - mine).max() < 1e-5
    from fastmlp.export import to_onnx

    plain = to_onnx(model.layout, model.params, "ReLU", ["c"] * 10)
    session = onnxruntime.InferenceSession(plain.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    assert np.abs(session.run(["probabilities"], {"input": test_images})[0] - mine).max() > 1e-3
