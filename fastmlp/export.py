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
                   for LeakyReLU), task, loss, version, and for a table's model `inputs`
                   (JSON: the graph's inputs and the columns each takes); `ensemble` (K)
                   for an ensemble

An ensemble of K members (--ensemble K) is one graph: each member's layers (initializers and
nodes named m<k>_W0, m<k>_dense0, ...) read the same input, each member's Softmax, Sigmoid or
Exp makes its outputs, and a Mean node averages them into "probabilities" (ArgMax and the
0.5 threshold then read the average) or "values"; identity outputs average their logits
before the target scaling. One network's graph is exactly as it always was.

A model trained on a table's columns (fastmlp.preprocess) takes the raw columns and does
its preprocessing in the graph:
    input          float (N, numbers): the number and true/false (1/0) columns, in the
                   table's order, NaN where a cell is missing; imputed, standardised, with
                   the missing indicators, exactly as `fastmlp predict` does
    one per text column, named by the column: string (N, 1), "" where missing; one-hot
                   by ai.onnx.ml's OneHotEncoder over the training levels, a level not
                   among them in the column's "other" (when it has one)

The weights keep the model's dtype (float32 or float64). The graph is checked by
onnx.checker and written atomically: a failure leaves no partial file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import FastMLPError

OPSET = 17
ML_OPSET = 3  # ai.onnx.ml: OneHotEncoder, for a table's text columns
IR_VERSION = 8  # read by every onnxruntime since 1.10
# The activations that are one ONNX operator (GELU and SiLU are composed: activation_nodes)
ONNX_ACTIVATIONS = {"ReLU": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid",
                    "LeakyReLU": "LeakyRelu", "identity": None}


def activation_nodes(activation: str, z: str, a: str, l: int, leaky_slope: float,
                     prefix: str = "") -> list:
    """The nodes computing a = act(z) for hidden layer l (none for identity), their names
    starting with prefix (an ensemble member's). GELU reads the initializers "sqrt2", "one"
    and "half" (to_onnx adds them)."""
    from onnx import helper

    g, s = f"{prefix}gelu{l}", f"{prefix}silu{l}"
    if activation == "GELU":  # 0.5 z (1 + erf(z / sqrt 2)): the exact form, as fastmlp's
        return [helper.make_node("Div", [z, "sqrt2"], [f"{g}_scaled"], name=f"{g}_div"),
                helper.make_node("Erf", [f"{g}_scaled"], [f"{g}_erf"], name=f"{g}_erf"),
                helper.make_node("Add", [f"{g}_erf", "one"], [f"{g}_cdf2"], name=f"{g}_add"),
                helper.make_node("Mul", [z, f"{g}_cdf2"], [f"{g}_twice"], name=f"{g}_mul"),
                helper.make_node("Mul", [f"{g}_twice", "half"], [a], name=g)]
    if activation == "SiLU":  # z sigmoid(z)
        return [helper.make_node("Sigmoid", [z], [f"{s}_sigmoid"], name=f"{s}_sigmoid"),
                helper.make_node("Mul", [z, f"{s}_sigmoid"], [a], name=s)]
    op = ONNX_ACTIVATIONS[activation]
    if op is None:
        return []
    attributes = {"alpha": float(leaky_slope)} if op == "LeakyRelu" else {}
    return [helper.make_node(op, [z], [a], name=f"{prefix}{op.lower()}{l}", **attributes)]


def to_onnx(layout, params: np.ndarray, activation: str, class_names, loss="cross_entropy",
            target_scaling=None, preprocessing=None,
            leaky_slope: float = None, residual: bool = False) -> "onnx.ModelProto":
    """The ONNX model of a parameter buffer (fastmlp.model.Layout's flat layout), or of an
    ensemble's (K, P) parameters (the mean of its members' outputs); loss says
    the output kind (kernels/interface.py LOSS_OUTPUT); target_scaling: (mean, scale) of
    standardised regression targets, or None; preprocessing: a table's
    (preprocess.Preprocessing), or None (the graph takes the network's inputs);
    leaky_slope: LeakyReLU's (None: the default); residual: the skip connections (an Add of
    the layer's input after its activation, where Layout.skips says)."""
    from .kernels.interface import NORM_EPS, LEAKY_SLOPE, LOSS_OUTPUT

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
    if preprocessing is None:
        inputs = [helper.make_tensor_value_info("input", elem, ["N", layout.sizes[0]])]
        current = "input"
    else:
        inputs, current = _preprocessing_graph(preprocessing, params.dtype, nodes,
                                               initializers)
    members = [params] if params.ndim == 1 else list(params)
    many = len(members) > 1
    features = current
    skips = layout.skips(residual)
    for k, member in enumerate(members):
        p = f"m{k}_" if many else ""  # an ensemble member's names
        current = features
        layers = layout.views(member)
        for l, (weights, bias, *norm) in enumerate(layers):
            layer_input = current
            initializers += [numpy_helper.from_array(np.ascontiguousarray(weights), f"{p}W{l}"),
                             numpy_helper.from_array(np.ascontiguousarray(bias), f"{p}b{l}")]
            last = l == len(layers) - 1
            out = f"{p}logits" if last else f"{p}z{l}"
            nodes.append(helper.make_node("Gemm", [current, f"{p}W{l}", f"{p}b{l}"], [out],
                                          name=f"{p}dense{l}"))
            current = out
            if norm:  # --norm: the scale and shift (and running statistics) after the bias
                names = [f"{p}{name}{l}" for name in ("gamma", "beta", "mean", "var")][:len(norm)]
                initializers += [numpy_helper.from_array(np.ascontiguousarray(vector), name)
                                 for vector, name in zip(norm, names)]
                if len(norm) == 2:  # LayerNorm over each row's units
                    nodes.append(helper.make_node("LayerNormalization", [out, *names],
                                                  [f"{p}y{l}"], axis=-1, epsilon=NORM_EPS,
                                                  name=f"{p}layernorm{l}"))
                else:  # BatchNorm with its running statistics (evaluation)
                    nodes.append(helper.make_node("BatchNormalization", [out, *names],
                                                  [f"{p}y{l}"], epsilon=NORM_EPS,
                                                  name=f"{p}batchnorm{l}"))
                current = out = f"{p}y{l}"
            hidden_nodes = [] if last else activation_nodes(activation, out, f"{p}a{l}", l,
                                                            leaky_slope, p)
            if hidden_nodes:
                nodes += hidden_nodes
                current = f"{p}a{l}"
            if skips[l]:
                nodes.append(helper.make_node("Add", [current, layer_input], [f"{p}h{l}"],
                                              name=f"{p}skip{l}"))
                current = f"{p}h{l}"
    width = layout.sizes[-1]
    kind = LOSS_OUTPUT[loss]
    if many:
        nodes += _mean_of_members(len(members), kind)
    if kind == "softmax":
        if not many:
            nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1,
                                          name="softmax"))
        nodes.append(helper.make_node("ArgMax", ["probabilities" if many else "logits"],
                                      ["label"], axis=1, keepdims=0, name="argmax"))
        outputs = [helper.make_tensor_value_info("probabilities", elem, ["N", width]),
                   helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]
    elif kind == "sigmoid":
        half = numpy_helper.from_array(np.array(0.5, dtype=params.dtype), "half")
        initializers.append(half)
        if not many:
            nodes.append(helper.make_node("Sigmoid", ["logits"], ["probabilities"],
                                          name="sigmoid"))
        nodes += [helper.make_node("Greater", ["probabilities", "half"], ["on"], name="on"),
                  helper.make_node("Cast", ["on"], ["labels"], to=TensorProto.INT64,
                                   name="labels")]
        outputs = [helper.make_tensor_value_info("probabilities", elem, ["N", width]),
                   helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", width])]
    else:  # regression: the values in the data's units
        if kind == "exp":
            if not many:
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
    graph = helper.make_graph(nodes, "fastmlp_mlp", inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if preprocessing is not None and preprocessing.categories:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(graph, producer_name="fastmlp", producer_version=__version__,
                              opset_imports=opsets)
    model.ir_version = IR_VERSION
    task = {"softmax": "classification", "sigmoid": "multilabel"}.get(kind, "regression")
    properties = {"class_names": json.dumps(list(class_names)), "activation": activation,
                  "task": task, "loss": loss}
    if activation == "LeakyReLU":
        properties["leaky_slope"] = repr(float(leaky_slope))
    if many:
        properties["ensemble"] = str(len(members))
    if preprocessing is not None:
        properties["inputs"] = json.dumps(_graph_inputs(preprocessing))
    helper.set_model_props(model, properties)
    onnx.checker.check_model(model)
    return model


def _mean_of_members(count: int, kind: str) -> list:
    """The nodes that average an ensemble's members (their logits m<k>_logits): each
    member's Softmax, Sigmoid or Exp, then a Mean into "probabilities" or "values"; for
    identity outputs the Mean of the logits, into "logits"."""
    from onnx import helper

    op = {"softmax": "Softmax", "sigmoid": "Sigmoid", "exp": "Exp"}.get(kind)
    if op is None:
        return [helper.make_node("Mean", [f"m{k}_logits" for k in range(count)], ["logits"],
                                 name="ensemble_mean")]
    attributes = {"axis": 1} if op == "Softmax" else {}
    nodes = [helper.make_node(op, [f"m{k}_logits"], [f"m{k}_outputs"],
                              name=f"m{k}_{op.lower()}", **attributes) for k in range(count)]
    mean = "values" if kind == "exp" else "probabilities"
    return nodes + [helper.make_node("Mean", [f"m{k}_outputs" for k in range(count)], [mean],
                                     name="ensemble_mean")]


def _graph_inputs(preprocessing) -> dict:
    """{graph input: the table columns it takes}."""
    inputs = {}
    if preprocessing.numeric:
        inputs["input"] = [rule.name for rule in preprocessing.numeric]
    for rule in preprocessing.categories:
        inputs[_text_input(rule.name)] = [rule.name]
    return inputs


def _text_input(column: str) -> str:
    return column if column != "input" else "input_"  # "input" is the numbers'


def _preprocessing_graph(preprocessing, dtype, nodes: list, initializers: list):
    """The nodes from the raw columns to the network's inputs (as preprocess.Preprocessing
    .transform lays them out: numbers, indicators, one-hot blocks); returns (the graph's
    inputs, the name of the features)."""
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE

    def constant(name, values, kind=dtype):
        initializers.append(numpy_helper.from_array(np.asarray(values, dtype=kind), name))
        return name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    inputs, parts = [], []
    numeric = preprocessing.numeric
    if numeric:
        inputs.append(helper.make_tensor_value_info("input", elem, ["N", len(numeric)]))
        missing = node("IsNaN", ["input"], "missing")
        filled = node("Where", [missing, constant("fill", [[r.fill for r in numeric]]),
                                "input"], "filled")
        shifted = node("Sub", [filled, constant("mean", [[r.mean for r in numeric]])], "shifted")
        parts.append(node("Div", [shifted, constant("scale", [[r.scale for r in numeric]])],
                          "standardised"))
        flagged = [j for j, rule in enumerate(numeric) if rule.indicator]
        if flagged:
            chosen = node("Gather", [missing, constant("flagged", flagged, np.int64)],
                          "missing_flagged", axis=1)
            parts.append(node("Cast", [chosen], "indicators", to=elem))
    for k, rule in enumerate(preprocessing.categories):
        name = _text_input(rule.name)
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["N", 1]))
        width = len(rule.levels) + 1  # the levels, then "" (missing)
        hot = node("OneHotEncoder", [name], f"onehot{k}", domain="ai.onnx.ml",
                   cats_strings=list(rule.levels) + [""], zeros=1)
        flat = node("Reshape", [hot, constant(f"shape{k}", [-1, width], np.int64)], f"flat{k}")
        flat = node("Cast", [flat], f"hot{k}", to=elem)
        parts.append(node("Slice", [flat, constant(f"start{k}", [0], np.int64),
                                    constant(f"levels{k}", [len(rule.levels)], np.int64),
                                    constant(f"axis{k}", [1], np.int64)], f"levels_hot{k}"))
        if rule.other:  # 1 where no level (not even missing) matched
            matched = node("ReduceSum", [flat, f"axis{k}"], f"matched{k}", keepdims=1)
            parts.append(node("Sub", [constant(f"one{k}", [[1.0]]), matched], f"other{k}"))
        if rule.indicator:
            parts.append(node("Slice", [flat, f"levels{k}",
                                        constant(f"end{k}", [width], np.int64), f"axis{k}"],
                              f"missing{k}"))
    features = node("Concat", parts, "features", axis=1) if len(parts) > 1 else parts[0]
    return inputs, features


def export_onnx(model_path, onnx_path) -> Path:
    """Write the model file's network to onnx_path (atomically); returns the path."""
    from .files import atomic_writer, writing
    from .model import load_model

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FastMLPError("export needs the onnx package: pip install 'fastmlp[onnx]'") \
            from None
    from .config import TrainConfig
    from .model import load_extras

    layout, params, config, class_names = load_model(model_path)
    settings = TrainConfig.from_saved(config)  # checked, and the defaults of older files
    extras = load_extras(model_path)
    model = to_onnx(layout, np.ascontiguousarray(params), settings.activation, class_names,
                    settings.loss, extras.target_scaling, extras.preprocessing,
                    settings.leaky_slope, settings.residual)
    onnx_path = Path(onnx_path)
    if onnx_path.is_dir():
        raise FastMLPError(f"{onnx_path}: is a directory; give the .onnx file to write")
    with writing(onnx_path), atomic_writer(onnx_path, "wb") as handle:
        handle.write(model.SerializeToString())
    return onnx_path
