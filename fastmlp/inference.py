"""Using a trained model: evaluate it on a test set, predict the class of images.

    evaluate_model(model_path, dataset=None, data_dir=None) -> Evaluation
    predict(model_path, inputs, top_k=1, invert=None)       -> [Prediction, ...]

The model file is read by fastmlp.model.load_model (format version, architecture and
weights checked). Evaluation and prediction run the one compiled forward pass of inference
(engine.evaluate_params or score_params / engine.predict_outputs), in the model's dtype;
for an ensemble once per member, averaging the members' outputs (the test loss is that of
the average: engine.output_loss).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, ModelFileError, first_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GZIP_SIGNATURE = b"\x1f\x8b"


@dataclass
class Model:
    path: Path
    layout: object  # fastmlp.model.Layout
    params: np.ndarray  # (P,), or (K, P): the members of an ensemble, whose outputs average
    config: dict
    class_names: tuple

    @property
    def activation(self) -> str:
        return self.config["activation"]

    @property
    def image_shape(self) -> tuple | None:
        """(height, width) of the images the model takes: its dataset's (or, trained with
        --data, its data's); None for a model of a table of features."""
        from .data import REGISTRY

        if self.config.get("data") is not None:
            shape = self.config.get("image_shape")
            return tuple(shape) if shape else None
        return REGISTRY[self.config.get("dataset", "fashion_mnist")].image_shape

    @property
    def members(self) -> int:
        """How many networks the model averages (--ensemble; 1: a single network)."""
        return 1 if self.params.ndim == 1 else len(self.params)

    @property
    def description(self) -> str:
        ensemble = f"an ensemble of {self.members} x " if self.members > 1 else ""
        return (f"{ensemble}{'-'.join(map(str, self.layout.sizes))} {self.activation}, "
                f"trained on {self.config.get('data') or self.config.get('dataset', '?')}")

    @functools.cached_property
    def settings(self):
        """The model's training settings as a validated TrainConfig (what the kernels read)."""
        from .config import TrainConfig

        return TrainConfig.from_saved(self.config)

    @property
    def task(self) -> str:
        return self.config.get("task", "classification")

    @functools.cached_property
    def extras(self):
        """model.ModelExtras: the target scaling and a table's preprocessing, if any."""
        from .model import load_extras

        return load_extras(self.path)

    @property
    def target_scaling(self):
        """(mean, scale) of standardised regression targets, or None."""
        return self.extras.target_scaling

    @property
    def preprocessing(self):
        """How a table's columns become the inputs (preprocess.Preprocessing), or None."""
        return self.extras.preprocessing

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The model's predictions for inputs x (N, inputs) as the network reads them (images
        scaled to [0, 1]): class probabilities (softmax), label probabilities (multilabel) or
        target values in the data's units (regression); an ensemble's, the members'
        average."""
        from .engine import predict_outputs

        outputs = predict_outputs(self.params, self.layout, x, self.settings)[0]
        if self.target_scaling is not None:
            mean, scale = self.target_scaling
            outputs = outputs * scale + mean
        return outputs

    probabilities = outputs  # a classifier's outputs are its class probabilities

    def soft_targets(self, x: np.ndarray, temperature: float) -> np.ndarray:
        """What this model teaches a student (--teacher): its class probabilities for inputs
        x softened at `temperature` T, softmax(logits / T), float64 (N, K) rows summing to 1.

        Made from the one inference pass's probabilities p = softmax(logits): log p is the
        logits less a constant per row, so softmax(log p / T) = softmax(logits / T). In
        float32, log p is exact to about 1e-7 where p is a normal number; a p that underflows
        (a logit more than about 87 below the row's largest) gives 0 where softmax(logits / T)
        would be exp(-87 / T) or less. The one place a teacher's soft targets are made: a
        model of several members (an ensemble) averages its members' softened probabilities
        here, mean_m softmax(log p_m / T)."""
        from .engine import predict_outputs

        if self.params.ndim == 1:
            return soften(self.outputs(x), temperature)
        return np.mean([soften(predict_outputs(member, self.layout, x, self.settings)[0],
                               temperature) for member in self.params], axis=0)


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T) per row, in float64: probabilities p = softmax(z) at temperature
    T, which is softmax(z / T) (log p is z less a constant per row); p = 0 stays 0."""
    with np.errstate(divide="ignore"):
        log_p = np.log(np.asarray(probabilities, dtype=np.float64)) / temperature
    log_p -= log_p.max(axis=1, keepdims=True)
    soft = np.exp(log_p)
    return soft / soft.sum(axis=1, keepdims=True)


def open_model(path) -> Model:
    """Load a model file and check it takes its dataset's images."""
    from .model import load_model

    model = Model(Path(path), *load_model(path))
    height, width = model.image_shape or (model.layout.sizes[0], 1)  # a table: any width
    if model.layout.sizes[0] != height * width:
        raise ModelFileError(f"{path}: a model of another architecture: it takes "
                             f"{model.layout.sizes[0]} inputs, {height}x{width} images have "
                             f"{height * width} pixels")
    return model


# ----------------------------------------------------------------------------- evaluate

@dataclass
class Evaluation:
    model: Model
    dataset: str
    loss: float
    accuracy: float | None  # classification and multilabel
    matrix: np.ndarray | None  # counts[true, predicted] (classification)
    class_names: tuple  # the outputs' names: classes, targets, labels
    figures: dict = None  # the task's figures (metrics.TASK_METRICS): accuracy, rmse, ...
    truth: np.ndarray | None = None  # regression, multilabel: the test targets, data units
    predicted: np.ndarray | None = None  # the model's outputs for them
    weights: np.ndarray | None = None  # the test rows' weights, or None

    @property
    def task(self) -> str:
        return self.model.task

    def per_output(self) -> dict:
        """{figure: one value per output} (regression: rmse, mae, r2 per target;
        multilabel: accuracy and f1 per label) for the test rows, weighted as the totals."""
        from .metrics import task_metrics

        columns = [task_metrics(self.task, self.truth[:, [t]], self.predicted[:, [t]], None,
                                weights=self.weights) for t in range(self.truth.shape[1])]
        return {name: [column[name] for column in columns] for name in columns[0]}

    @property
    def per_class_accuracy(self) -> np.ndarray:
        totals = self.matrix.sum(axis=1)
        return np.divide(np.diag(self.matrix), totals, out=np.zeros(len(totals)),
                         where=totals > 0)

    @property
    def rows_called(self) -> str:
        """What one test row is: an image, or a row of a table."""
        return "images" if self.model.image_shape is not None else "rows"

    @property
    def count(self) -> int:
        return int(self.matrix.sum()) if self.matrix is not None else len(self.truth)


def evaluate_model(model_path, dataset=None, data_dir=None) -> Evaluation:
    """Test loss, accuracy and confusion matrix of a model file on a dataset's test set
    (default: the dataset it was trained on)."""
    from .config import DATASETS, canonical_choice
    from .data import load_dataset, model_inputs
    from .engine import confusion_matrix, evaluate_params

    model = open_model(model_path)
    if dataset is None and model.config.get("data") is not None:
        return _evaluate_own_data(model)
    dataset = canonical_choice(dataset or model.config.get("dataset", "fashion_mnist"),
                               DATASETS, "-d/--dataset")
    data = load_dataset(dataset, data_dir)
    classes = len(data.class_names)
    if model.layout.sizes[-1] != classes:
        raise ModelFileError(f"{model_path}: a model of another architecture: it has "
                             f"{model.layout.sizes[-1]} outputs, {dataset} has {classes} classes")
    x = model_inputs(data.x_test, model.params.dtype)
    labels = data.y_test.astype(np.int64)
    loss, accuracy, predictions = evaluate_params(
        np.ascontiguousarray(model.params), model.layout, x, labels, model.settings)
    return Evaluation(model, dataset, loss, accuracy,
                      confusion_matrix(labels, predictions, classes), tuple(data.class_names),
                      {"accuracy": accuracy})


def _evaluate_own_data(model: Model) -> Evaluation:
    """A model trained with --data, on that data's test set (the same split as training)."""
    from types import SimpleNamespace

    from .config import TrainConfig
    from .data import model_inputs
    from .engine import confusion_matrix, score_params
    from .metrics import TASK_METRICS
    from .owndata import load_own_data

    settings = SimpleNamespace(**{**TrainConfig().to_dict(), **model.config,
                                  "dtype": model.params.dtype.name})
    data = load_own_data(settings, model.preprocessing)
    if tuple(data.class_names) != tuple(model.class_names) \
            or data.x_test.shape[1] != model.layout.sizes[0] or data.task != model.task:
        raise DataError(f"{settings.data}: the data has changed since the model was trained "
                        f"(its classes, targets or width differ from the model's)")
    x = model_inputs(data.x_test, model.params.dtype)
    y = data.y_test
    if model.target_scaling is not None:  # the loss in the units the network learnt
        mean, scale = model.target_scaling
        y = (y - mean) / scale
    scores = score_params(np.ascontiguousarray(model.params), model.layout, x, y,
                          model.settings, data.w_test, model.target_scaling)
    figures = {name: scores[name] for name in TASK_METRICS[model.task]}
    if model.task != "classification":
        return Evaluation(model, data.name, scores["loss"], figures.get("accuracy"), None,
                          tuple(model.class_names), figures, scores["truth"], scores["outputs"],
                          data.w_test)
    matrix = confusion_matrix(y, scores["predictions"], len(model.class_names))
    return Evaluation(model, data.name, scores["loss"], figures["accuracy"], matrix,
                      tuple(model.class_names), figures)


# ----------------------------------------------------------------------------- predict

@dataclass
class Prediction:
    source: str  # "image.png" or "file.idx[12]" or "table.csv[3]"
    # [(class name, probability), ...] most likely first, top_k long (classification);
    # [(label, probability), ...] for every label (multilabel), [(target, value), ...] for
    # every target (regression), in the model's order
    classes: list


def read_inputs(path, image_shape, invert=None) -> tuple[list, np.ndarray]:
    """(names, uint8 images (N, height * width)) from a PNG (or any image Pillow reads) or an
    IDX images file (.gz or raw). Pictures of another size are resized to image_shape
    (height, width); colour is made gray.

    invert: True / False, or None to invert when the image's border is light (a dark
    object on a light background; the datasets have light objects on black)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an image or IDX file") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(GZIP_SIGNATURE) or head[:4] in (b"\x00\x00\x08\x03", b"\x00\x00\x08\x01"):
        return _read_idx_images(path, image_shape)
    return [str(path)], _read_picture(path, image_shape, invert)[None, :]


def _read_idx_images(path: Path, image_shape):
    from .data import read_idx

    array = read_idx(path)
    if array.ndim == 1:
        raise DataError(f"{path}: an IDX label file; predict needs an IDX images file")
    if array.shape[1:] != tuple(image_shape):
        raise DataError(f"{path}: IDX images of shape {array.shape[1:]}, expected "
                        f"{image_shape[0]}x{image_shape[1]}")
    return [f"{path}[{i}]" for i in range(len(array))], array.reshape(len(array), -1)


def _read_picture(path: Path, image_shape, invert) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            gray = image.convert("L")
    except Exception as exc:  # Pillow raises many types for a bad file; one line for the user
        raise DataError(f"{path}: not a readable image or IDX file ({first_line(exc)})") from None
    height, width = image_shape
    if gray.size != (width, height):
        gray = gray.resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.uint8)
    if invert is None:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        invert = border.mean() > 127
    if invert:
        pixels = 255 - pixels
    return pixels.reshape(-1)


def predict(model_path, inputs, top_k: int = 1, invert=None) -> list:
    """For every image or row in `inputs` (paths): the top_k classes and probabilities (a
    classifier), each label's probability (multilabel), each target's value (regression)."""
    from .data import model_inputs
    from .errors import ConfigError

    model = open_model(model_path)
    classes = len(model.class_names)
    if not 1 <= top_k <= classes:
        raise ConfigError(f"--top-k: {top_k} must be between 1 and {classes}")
    if not inputs:
        raise ConfigError("predict needs at least one INPUT (a PNG image or an IDX images file)")
    results = []
    for path in inputs:  # read all inputs first: a bad one fails before any output
        if model.image_shape is None:  # trained on a table (--data): rows of features
            from .owndata import read_table_inputs

            results.append(read_table_inputs(path, model))
        else:
            results.append(read_inputs(path, model.image_shape, invert))
    predictions = []
    for names, images in results:
        for start in range(0, len(images), 4096):
            probs = model.probabilities(model_inputs(images[start:start + 4096],
                                                     model.params.dtype))
            if model.task != "classification":  # every output, in the model's order
                for row, name in enumerate(names[start:start + 4096]):
                    predictions.append(Prediction(name, list(zip(
                        model.class_names, map(float, probs[row])))))
                continue
            best = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
            for row, name in enumerate(names[start:start + 4096]):
                predictions.append(Prediction(name, [(model.class_names[k], float(probs[row, k]))
                                                     for k in best[row]]))
    return predictions
