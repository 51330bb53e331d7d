"""Pictures of a run, as PNG files (matplotlib's Agg renderer; no display, no pyplot state).

    learning_curves(epochs, path)              loss and the task's main figure per epoch
    confusion_matrix_png(matrix, names, path)  counts[true, predicted] with class names
    regression_png(truth, predicted, names, path)  predicted against true, and residuals
    samples_png(images, names, path)           one image per class (assignment question 1)

Every file is written atomically: a failure leaves no partial PNG and keeps an older one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError, FastMLPError

LEARNING_CURVES = "learning_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
REGRESSION = "predicted_vs_true.png"


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(figure, path) -> Path:
    """Write a figure to `path` atomically; FastMLPError (one line) if it cannot be written."""
    from .files import atomic_writer, writing

    path = Path(path)
    with writing(path), atomic_writer(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path


def learning_curves(epochs: list, path, title: str = "") -> Path:
    """Two panels against the epoch: the loss (train and validation) and the task's main
    figure (accuracy, train and validation; or the validation RMSE of regression)."""
    figure = _figure(10, 4)
    x = [record["epoch"] for record in epochs]
    second = "accuracy" if epochs and "val_accuracy" in epochs[0] else "rmse"
    for axes, key in zip(figure.subplots(1, 2), ("loss", second)):
        if epochs and f"train_{key}" in epochs[0]:
            axes.plot(x, [r[f"train_{key}"] for r in epochs], "o-", label="train")
        axes.plot(x, [r[f"val_{key}"] for r in epochs], "s-", label="validation")
        label = key.upper() if key == "rmse" else key
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.set_title(label)
        axes.grid(alpha=0.3)
        axes.legend()
        if x:
            axes.set_xticks(x if len(x) <= 20 else np.linspace(x[0], x[-1], 11).round())
    if title:
        figure.suptitle(title)
    return save_png(figure, path)


def confusion_matrix_png(matrix, class_names, path, title: str = "test confusion matrix") -> Path:
    """A heat map of counts[true, predicted], each cell labelled with its count."""
    matrix = np.asarray(matrix)
    classes = len(class_names)
    figure = _figure(8.5, 7.5)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(classes), class_names, rotation=45, ha="right")
    axes.set_yticks(range(classes), class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                      color="white" if matrix[i, j] > threshold else "black")
    return save_png(figure, path)


def samples_png(images, class_names, path, title: str = "") -> Path:
    """One image (height, width) per class in a 2 x 5 grid, titled with the class names."""
    figure = _figure(10, 4.6)
    rows = 2 if len(images) > 5 else 1
    columns = -(-len(images) // rows)
    grid = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axes, image, name in zip(grid, images, class_names):
        axes.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255)
        axes.set_title(name)
        axes.axis("off")
    for axes in grid[len(images):]:
        axes.axis("off")
    if title:
        figure.suptitle(title)
    return save_png(figure, path)


def one_per_class(labels, classes: int) -> np.ndarray:
    """Index of the first example of each class 0..classes-1 (a missing class is an error)."""
    labels = np.asarray(labels)
    indices = []
    for label in range(classes):
        found = np.flatnonzero(labels == label)
        if not len(found):
            raise FastMLPError(f"the data has no example of class {label}")
        indices.append(found[0])
    return np.array(indices, dtype=np.int64)


def regression_png(truth, predicted, names, path, title: str = "test set") -> Path:
    """For each target (a row of panels): predicted against true with the diagonal, and the
    residuals (predicted - true) against the prediction."""
    truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(truth), -1)
    shown = min(truth.shape[1], 4)  # the first targets: a picture stays readable
    figure = _figure(10, 4 * shown)
    panels = np.asarray(figure.subplots(shown, 2)).reshape(shown, 2)
    for t in range(shown):
        scatter, residual = panels[t]
        low, high = min(truth[:, t].min(), predicted[:, t].min()), max(truth[:, t].max(),
                                                                      predicted[:, t].max())
        scatter.scatter(truth[:, t], predicted[:, t], s=6, alpha=0.5)
        scatter.plot([low, high], [low, high], "k--", linewidth=1)
        scatter.set_xlabel(f"true {names[t]}")
        scatter.set_ylabel(f"predicted {names[t]}")
        residual.scatter(predicted[:, t], predicted[:, t] - truth[:, t], s=6, alpha=0.5)
        residual.axhline(0, color="k", linestyle="--", linewidth=1)
        residual.set_xlabel(f"predicted {names[t]}")
        residual.set_ylabel("residual (predicted - true)")
        for axes in (scatter, residual):
            axes.grid(alpha=0.3)
    figure.suptitle(title)
    return save_png(figure, path)


def run_plots(run_dir, epochs: list, matrix, class_names, title: str = "",
              regression=None) -> dict:
    """The end-of-run pictures in run_dir; returns {wandb key: path}. matrix: the test
    confusion matrix (classification), or None; regression: (true, predicted) test targets
    in the data's units, or None."""
    run_dir = Path(run_dir)
    pictures = {"learning_curves": learning_curves(epochs, run_dir / LEARNING_CURVES, title)}
    suffix = f" - {title}" if title else ""
    if matrix is not None:
        pictures["confusion_matrix_png"] = confusion_matrix_png(
            matrix, class_names, run_dir / CONFUSION_MATRIX, f"test confusion matrix{suffix}")
    if regression is not None:
        pictures["predicted_vs_true"] = regression_png(*regression, class_names,
                                                       run_dir / REGRESSION, f"test set{suffix}")
    return pictures


# ----------------------------------------------------------------------------- samples

def samples(dataset: str, data_dir, output_dir, wandb_mode="offline",
            wandb_project="myprojectname", wandb_entity="myname") -> Path:
    """samples_<dataset>.png in output_dir: the first training image of each class; also
    logged to wandb (offline unless asked; nothing when disabled). Returns the PNG path."""
    from .data import REGISTRY, load_dataset

    data = load_dataset(dataset, data_dir)
    present = set(np.unique(data.y_train).tolist())
    for label, name in enumerate(data.class_names):
        if label not in present:
            raise DataError(f"{data.name}: the training labels have no example of class "
                            f"{label} ({name})")
    indices = one_per_class(data.y_train, len(data.class_names))
    images = data.x_train[indices].reshape(-1, *REGISTRY[data.name].image_shape)
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FastMLPError(f"cannot create {output_dir}: {exc.strerror or exc}") from None
    path = samples_png(images, data.class_names, output_dir / f"samples_{data.name}.png",
                       f"{data.name}: one training image per class")
    if wandb_mode != "disabled":  # one wandb run (job type `samples`): the grid, and each class
        from .tracking import WandbRun

        run = WandbRun(wandb_mode, output_dir, project=wandb_project, entity=wandb_entity,
                       name=f"samples_{data.name}", config={"dataset": data.name},
                       job_type="samples")
        try:
            run.log_images({"samples_grid": path,
                            "samples": list(zip(images, data.class_names))})
        finally:
            run.finish()
    return path
