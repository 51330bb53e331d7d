"""`fastmlp export MODEL.npz model.onnx`: a model file as a standard ONNX graph.

    input          "input", float (N, inputs): what the network reads (images as pixel / 255
                   in [0, 1], as `fastmlp train` feeds them; other features as they are)
    per layer      Gemm(A, W_l, b_l), then the hidden activation (Relu, Tanh, Sigmoid,
                   LeakyRelu(alpha = the slope); SiLU as Mul(z, Sigmoid(z)); GELU, which
                   opset 17 lacks, as 0.5 * z * (1 + Erf(z / sqrt 2)); nothing for identity)
    outputs        by the model's output kind (its loss):
                   classes     "probabilities" = Softmax(logits, axis=1), and "label" =
                               ArgMax (int64, the index into the class names)
                   multilabel  "probabilities" = Sigmoid(logits), and "labels" = (p > 0.5)
                               as int64 0/1, one column per label
                   regression  "values" = logits * target_scale + target_mean (the data's
                               units; no Mul/Add when the targets were not standardised),
                               or Exp(logits) for the poisson loss; one column per target
    metadata       class_names (JSON: the outputs' names), activation (and leaky_slope
                   for LeakyReLU), task, loss, version

The weights keep the model's dtype (float32 or float64). The graph is checked by
onnx.checker and written atomically: a failure leaves no partial file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import FastMLPError

OPSET = 17
IR_VERSION = 8  # read by every onnxruntime since 1.10
# The activations that are one ONNX operator (GELU and SiLU are composed: activation_nodes)
ONNX_ACTIVATIONS = {"ReLU": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid",
                    "LeakyReLU": "LeakyRelu", "identity": None}


def activation_nodes(activation: str, z: str, a: str, l: int, leaky_slope: float) -> list:
    """The nodes computing a = act(z) for hidden layer l (none for identity). GELU reads
    the initializers "sqrt2", "one" and "half" (to_onnx adds them)."""
    from onnx import helper

    if activation == "GELU":  # 0.5 z (1 + erf(z / sqrt 2)): the exact form, as fastmlp's
        return [helper.make_node("Div", [z, "sqrt2"], [f"gelu{l}_scaled"], name=f"gelu{l}_div"),
                helper.make_node("Erf", [f"gelu{l}_scaled"], [f"gelu{l}_erf"], name=f"gelu{l}_erf"),
                helper.make_node("Add", [f"gelu{l}_erf", "one"], [f"gelu{l}_cdf2"],
                                 name=f"gelu{l}_add"),
                helper.make_node("Mul", [z, f"gelu{l}_cdf2"], [f"gelu{l}_twice"],
                                 name=f"gelu{l}_mul"),
                helper.make_node("Mul", [f"gelu{l}_twice", "half"], [a], name=f"gelu{l}")]
    if activation == "SiLU":  # z sigmoid(z)
        return [helper.make_node("Sigmoid", [z], [f"silu{l}_sigmoid"], name=f"silu{l}_sigmoid"),
                helper.make_node("Mul", [z, f"silu{l}_sigmoid"], [a], name=f"silu{l}")]
    op = ONNX_ACTIVATIONS[activation]
    if op is None:
        return []
    attributes = {"alpha": float(leaky_slope)} if op == "LeakyRelu" else {}
    return [helper.make_node(op, [z], [a], name=f"{op.lower()}{l}", **attributes)]


def to_onnx(layout, params: np.ndarray, activation: str, class_names, loss="cross_entropy",
            target_scaling=None, leaky_slope: float = None) -> "onnx.ModelProto":
    """The ONNX model of a parameter buffer (fastmlp.model.Layout's flat layout); loss says
    the output kind (kernels/interface.py LOSS_OUTPUT); target_scaling: (mean, scale) of
    standardised regression targets, or None; leaky_slope: LeakyReLU's (None: the
    default)."""
    from .kernels.interface import LEAKY_SLOPE, LOSS_OUTPUT

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from .version import __version__

    elem = TensorProto.FLOAT if params.dtype == np.float32 else TensorProto.DOUBLE
    leaky_slope = LEAKY_SLOPE if leaky_slope is None else leaky_slope
    nodes, initializers = [], []
    if activation == "GELU":  # its constants, in the model's dtype
        initializers += [numpy_helper.from_array(np.array(value, dtype=params.dtype), name)
                         for name, value in (("sqrt2", np.sqrt(2.0)), ("one", 1.0),
                                             ("half", 0.5))]
    current = "input"
    layers = layout.views(params)
    for l, (weights, bias) in enumerate(layers):
        initializers += [numpy_helper.from_array(np.ascontiguousarray(weights), f"W{l}"),
                         numpy_helper.from_array(np.ascontiguousarray(bias), f"b{l}")]
        last = l == len(layers) - 1
        out = "logits" if last else f"z{l}"
        nodes.append(helper.make_node("Gemm", [current, f"W{l}", f"b{l}"], [out],
                                      name=f"dense{l}"))
        current = out
        hidden_nodes = [] if last else activation_nodes(activation, out, f"a{l}", l, leaky_slope)
        if hidden_nodes:
            nodes += hidden_nodes
            current = f"a{l}"
    width = layout.sizes[-1]
    kind = LOSS_OUTPUT[loss]
    if kind == "softmax":
        nodes += [helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1,
                                   name="softmax"),
                  helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0,
                                   name="argmax")]
        outputs = [helper.make_tensor_value_info("probabilities", elem, ["N", width]),
                   helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]
    elif kind == "sigmoid":
        half = numpy_helper.from_array(np.array(0.5, dtype=params.dtype), "half")
        initializers.append(half)
        nodes += [helper.make_node("Sigmoid", ["logits"], ["probabilities"], name="sigmoid"),
                  helper.make_node("Greater", ["probabilities", "half"], ["on"], name="on"),
                  helper.make_node("Cast", ["on"], ["labels"], to=TensorProto.INT64,
                                   name="labels")]
        outputs = [helper.make_tensor_value_info("probabilities", elem, ["N", width]),
                   helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", width])]
    else:  # regression: the values in the data's units
        if kind == "exp":
            nodes.append(helper.make_node("Exp", ["logits"], ["values"], name="exp"))
        elif target_scaling is None:
            nodes.append(helper.make_node("Identity", ["logits"], ["values"], name="values"))
        else:
            mean, scale = (np.asarray(a, dtype=params.dtype).reshape(width) for a in
                           target_scaling)
            initializers += [numpy_helper.from_array(scale, "target_scale"),
                             numpy_helper.from_array(mean, "target_mean")]
            nodes += [helper.make_node("Mul", ["logits", "target_scale"], ["scaled"],
                                       name="unscale"),
                      helper.make_node("Add", ["scaled", "target_mean"], ["values"],
                                       name="unshift")]
        outputs = [helper.make_tensor_value_info("values", elem, ["N", width])]
    graph = helper.make_graph(
        nodes, "fastmlp_mlp",
        [helper.make_tensor_value_info("input", elem, ["N", layout.sizes[0]])], outputs,
        initializers)
    model = helper.make_model(graph, producer_name="fastmlp", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    task = {"softmax": "classification", "sigmoid": "multilabel"}.get(kind, "regression")
    props = {"class_names": json.dumps(list(class_names)), "activation": activation,
             "task": task, "loss": loss}
    if activation == "LeakyReLU":
        props["leaky_slope"] = repr(float(leaky_slope))
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def export_onnx(model_path, onnx_path) -> Path:
    """Write the model file's network to onnx_path (atomically); returns the path."""
    from .files import atomic_writer, writing
    from .model import load_model

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FastMLPError("export needs the onnx package: pip install 'fastmlp[onnx]'") \
            from None
    from .model import load_target_scaling

    from .config import TrainConfig

    layout, params, config, class_names = load_model(model_path)
    settings = TrainConfig.from_saved(config)  # checked, and the defaults of older files
    model = to_onnx(layout, np.ascontiguousarray(params), settings.activation, class_names,
                    settings.loss, load_target_scaling(model_path), settings.leaky_slope)
    onnx_path = Path(onnx_path)
    if onnx_path.is_dir():
        raise FastMLPError(f"{onnx_path}: is a directory; give the .onnx file to write")
    with writing(onnx_path), atomic_writer(onnx_path, "wb") as handle:
        handle.write(model.SerializeToString())
    return onnx_path
