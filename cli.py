"""fastmlp command line: `fastmlp ...` and `python cli.py ...` are the same program.

Every user error ends as ONE line `error: <what is wrong>` and a non-zero exit.
"""
from __future__ import annotations

import os
import sys


def _blas_threads_from_command_line(argv: list) -> None:
    """`--threads N` must bound OpenBLAS from the start: it starts its threads when it loads
    (at the first `import numpy`, long before click parses the flags) and they spin for a
    while, outside any limit set later. So N goes into OPENBLAS_NUM_THREADS before anything
    loads it; a value the user exported wins. Later limits (threadpoolctl) still apply."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads="):
            value = arg.partition("=")[2]
        elif arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        if value.isdigit() and int(value) >= 1:  # else the flag's own check reports it
            os.environ.setdefault("OPENBLAS_NUM_THREADS", value)


_blas_threads_from_command_line(sys.argv[1:])

# The imports below load NumPy: they come after the BLAS thread count is set.
import click  # noqa: E402

from fastmlp.config import (MAY_CHANGE, SETTING, SETTINGS, TrainConfig, infer_num_layers,
                            parse_widths, with_table_defaults)
from fastmlp.benchmarks import ANCHORS
from fastmlp.errors import FastMLPError
from fastmlp.sweep import ENGINES  # cheap: no optuna/wandb


class _SpecChoice(click.Choice):
    """Case-insensitive choice that returns, and shows in help and errors, the registry's
    spelling (`ReLU`, `Xavier`); click >= 8.2 would show the case-folded `relu`, `xavier`."""

    def get_metavar(self, param, ctx=None):
        return f"[{'|'.join(self.choices)}]"

    def get_invalid_choice_message(self, value, ctx):
        return f"{value!r} is not one of {', '.join(map(repr, self.choices))}."


class _Widths(click.ParamType):
    """One or more whole numbers: `-sz 64` or `-sz 512 256 128` (main() joins the values of
    a many-valued flag with commas before click sees them: click options take a fixed count)."""

    name = "N [N ...]"

    def convert(self, value, param, ctx):
        try:
            return parse_widths(value)
        except ValueError:
            self.fail(f"{str(value).replace(',', ' ')!r} is not a list of whole numbers", param,
                      ctx)


NAMES_SEPARATOR = "\x1f"  # joins the names of a many-valued text flag (names may hold commas)


class _Names(click.ParamType):
    """One or more names: `--target price` or `--target x y z` (joined by main(), like
    _Widths's numbers)."""

    name = "NAME [NAME ...]"

    def convert(self, value, param, ctx):
        return tuple(value.split(NAMES_SEPARATOR)) if isinstance(value, str) else value


def _join_many_values(argv: list) -> list:
    """`-sz 512 256 128 ...` -> `-sz 512,256,128 ...` and `--target a b` -> one value, for
    every many-valued setting: numbers for a numeric one, every value up to the next flag
    for a text one."""
    joined, i = [], 0
    kinds = {flag: entry.kind for entry in SETTINGS if entry.many
             for flag in (entry.short, entry.long) if flag}
    while i < len(argv):
        joined.append(argv[i])
        i += 1
        kind = kinds.get(joined[-1])
        if kind is not None:
            values = []
            while i < len(argv) and (argv[i].lstrip("-").isdigit() if kind is not str
                                     else not argv[i].startswith("-")):
                values.append(argv[i])
                i += 1
            if values:
                joined.append((NAMES_SEPARATOR if kind is str else ",").join(values))
    return joined


def setting_option(name: str, **overrides):
    """The click option of a setting, made from its row in the settings table
    (fastmlp/config.py); `overrides` (default, help, ...) adapt it to another command."""
    entry = SETTING[name]
    if entry.kind is bool:  # --preprocess/--no-preprocess
        return click.option(f"{entry.long}/{entry.off_flag}", name,
                            **{"default": entry.default, "help": entry.help, **overrides})
    flags = [flag for flag in (entry.short, entry.long) if flag]
    kind = (_SpecChoice(entry.choices, case_sensitive=False) if entry.choices
            else (_Names() if entry.kind is str else _Widths()) if entry.many else entry.kind)
    options = dict(type=kind, default=entry.default, show_default=entry.default is not None,
                   help=entry.help)
    options.update(overrides)
    return click.option(*flags, name, **options)


def train_options(command):
    """Attach every setting of the table, in its order, and --progress to a click command."""
    command = click.option("--progress/--no-progress", default=None,
                           help="Live progress bar (default: when writing to a terminal).")(command)
    for entry in reversed(SETTINGS):
        command = setting_option(entry.name)(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """fastmlp: train multilayer perceptrons on a CPU, fast."""


@cli.command()
@train_options
@click.option("--resume", metavar="RUN_DIR", default=None,
              help="Continue the interrupted run in RUN_DIR from its checkpoint.npz, with the "
                   "settings it started with (only " + ", ".join(
                       entry.long for entry in SETTINGS if entry.resume == MAY_CHANGE)
                   + " may change).")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Draw learning curves and the test confusion matrix (PNG) into the run "
                   "directory at the end (and log them to wandb).")
def train(progress, resume, plots, **flags):
    """Train an MLP on Fashion-MNIST or MNIST and write its results to a run directory."""
    from fastmlp.trainer import train as run_training

    from click.core import ParameterSource

    context = click.get_current_context()
    typed = {name: value for name, value in flags.items()
             if context.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if resume is None:
        flags = with_table_defaults(flags, given=typed)
        flags = infer_num_layers(flags, num_layers_given="num_layers" in typed)
        result = run_training(TrainConfig(**flags), progress=progress, plots=plots)
    else:  # only the flags typed on the line; the rest come from the run's checkpoint
        result = run_training(typed, progress=progress, resume_dir=resume, plots=plots)
    summary = result.summary
    figures = "  ".join(f"test {key.removeprefix('test_')} {value:.4f}"
                        for key, value in summary.items()
                        if key.startswith("test_") and key != "test_loss")
    click.echo(f"{figures}  test loss {summary['test_loss']:.4f}  ->  {result.run_dir}")
    if "confusion_matrix" in summary:
        _print_confusion_matrix(summary["confusion_matrix"], summary["class_names"])


@cli.command()
@click.argument("model", metavar="MODEL.npz")
@setting_option("dataset", default=None, show_default=False,
                help="Test set to evaluate on (default: the dataset the model was trained on).")
@setting_option("data_dir")
@click.option("--plot", metavar="PATH", default=None,
              help="PNG to write (default: beside the model): the confusion matrix "
                   "(evaluate_<dataset>_confusion_matrix.png), or for regression predicted "
                   "against true values and the residuals (evaluate_<dataset>_regression.png).")
@click.option("--no-plot", is_flag=True, help="Write no PNG.")
def evaluate(model, dataset, data_dir, plot, no_plot):
    """Test loss and figures of a saved model: accuracy, per-class accuracy and confusion
    matrix (classes); RMSE, MAE and R^2 per target (regression); accuracy and F1 per label
    (multilabel)."""
    from pathlib import Path

    from fastmlp.inference import evaluate_model
    from fastmlp.plots import confusion_matrix_png, regression_png

    result = evaluate_model(model, dataset, data_dir)
    picture = {"classification": "confusion_matrix", "regression": "regression"}.get(result.task)
    if not no_plot and picture:
        chosen = plot
        plot = Path(plot) if plot else (Path(model).parent /
                                        f"evaluate_{result.dataset}_{picture}.png")
        title = f"{result.dataset} test set: " + "  ".join(
            f"{name} {value:.4f}" for name, value in result.figures.items())
        try:
            if result.task == "classification":
                confusion_matrix_png(result.matrix, result.class_names, plot, title)
            else:
                regression_png(result.truth, result.predicted, result.class_names, plot, title)
        except FastMLPError as exc:
            hint = "" if chosen else " (choose another place with --plot PATH, or --no-plot)"
            raise FastMLPError(f"{exc}{hint}") from None
    click.echo(f"model {model}  ({result.model.description})")
    click.echo(f"{result.dataset} test set: {result.count} {result.rows_called}  "
               f"loss {result.loss:.4f}  "
               + "  ".join(f"{name} {value:.4f}" for name, value in result.figures.items()))
    if result.task == "classification":
        _print_per_class(result.matrix, result.class_names, result.per_class_accuracy,
                         result.rows_called)
        _print_confusion_matrix(result.matrix.tolist(), result.class_names)
    else:
        _print_per_output(result)
    if not no_plot and picture:
        click.echo(f"{picture.replace('_', ' ')} -> {plot}")


@cli.command()
@click.argument("model", metavar="MODEL.npz")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-k", "--top-k", "top_k", type=int, default=1, show_default=True,
              help="How many of the most likely classes to show per image.")
@click.option("--invert/--no-invert", default=None,
              help="Invert the gray levels of PNG images (default: when the image border is "
                   "light, since the datasets show light items on black).")
def predict(model, inputs, top_k, invert):
    """Class and probability of each image: PNG files (28x28 grayscale, others are
    resized and made gray) or IDX image files (.gz or raw, one line per image).

    Output: one tab-separated line per image: INPUT, then class and probability top-k times.
    """
    from fastmlp.inference import predict as run_predict

    for prediction in run_predict(model, list(inputs), top_k, invert):
        click.echo("\t".join([prediction.source] + [f"{name}\t{probability:.4f}"
                                                    for name, probability in prediction.classes]))


@cli.command()
@setting_option("dataset", help="Dataset to show.")
@setting_option("data_dir")
@setting_option("output_dir", help="Where samples_<dataset>.png is written.")
@setting_option("wandb_project")
@setting_option("wandb_entity")
@setting_option("wandb_mode")
def samples(dataset, data_dir, output_dir, wandb_project, wandb_entity, wandb_mode):
    """One training image per class in a grid (assignment question 1), as a PNG and in wandb."""
    from fastmlp.plots import samples as draw_samples

    path = draw_samples(dataset, data_dir, output_dir, wandb_mode, wandb_project, wandb_entity)
    click.echo(f"one image per class -> {path}")


@cli.command()
@click.argument("model", metavar="MODEL.npz")
@click.argument("output", metavar="OUTPUT.onnx")
def export(model, output):
    """Write a model as a standard ONNX graph (Gemm and activation nodes, Softmax output).

    Its input "input" is float (N, inputs): images as pixel / 255, other features as they
    were trained; outputs "probabilities" and "label" (the class index)."""
    from fastmlp.export import export_onnx

    path = export_onnx(model, output)
    click.echo(f"ONNX model -> {path}")


def _print_per_class(matrix, class_names, accuracy, rows_called):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per-class accuracy")
    for name in ("class", rows_called, "correct", "accuracy"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for index, name in enumerate(class_names):
        table.add_row(f"{index} {name}", str(int(matrix[index].sum())),
                      str(int(matrix[index, index])), f"{accuracy[index]:.4f}")
    Console().print(table)


def _print_per_output(result):
    """The figures of each target (regression) or label (multilabel), one row each."""
    from rich.console import Console
    from rich.table import Table

    per_output = result.per_output()
    table = Table(title="per target" if result.task == "regression" else "per label")
    table.add_column("target" if result.task == "regression" else "label")
    for name in per_output:
        table.add_column(name, justify="right")
    for index, output in enumerate(result.class_names):
        table.add_row(output, *(f"{values[index]:.4f}" for values in per_output.values()))
    Console().print(table)


def _print_confusion_matrix(matrix, class_names):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="test confusion matrix (rows: true class, columns: predicted)")
    table.add_column("true \\ pred")
    for index in range(len(class_names)):
        table.add_column(str(index), justify="right")
    for index, (name, row) in enumerate(zip(class_names, matrix)):
        table.add_row(f"{index} {name}", *[f"[bold]{v}[/]" if i == index else str(v)
                                           for i, v in enumerate(row)])
    Console().print(table)


@cli.command()
@click.option("--json", "json_path", metavar="PATH", default=None,
              help="Also write every figure as JSON to PATH.")
@click.option("--group", "groups", multiple=True,
              type=click.Choice(["dense_forward", "dense_backward", "activation", "loss",
                                 "optimizer", "inference", "regression"]),
              help="Only these kernel groups (repeatable; default: all); inference: 10,000 "
                   "test images through the compiled forward pass, against scikit-learn's "
                   "predict_proba; regression: one epoch on a generated 100,000 x 50 table "
                   "at batch 32 and 200, against scikit-learn's MLPRegressor.")
@click.option("--epochs/--no-epochs", default=True, show_default=True,
              help="Also time whole epochs on Fashion-MNIST (seed config, batch 256, wide).")
@click.option("--anchor", "anchors", multiple=True, type=click.Choice(list(ANCHORS)),
              help="Time the same epoch in these libraries too, when installed (repeatable; "
                   "default: all of " + ", ".join(ANCHORS) + ").")
@click.option("--no-anchors", is_flag=True, help="Time no other library.")
@click.option("--real-runs/--no-real-runs", default=True, show_default=True,
              help="Also time real multi-epoch `train` runs (evaluation between epochs).")
@setting_option("threads")
@setting_option("data_dir")
def bench(json_path, groups, epochs, anchors, no_anchors, real_runs, threads, data_dir):
    """Time every Numba kernel and whole epochs against the NumPy reference."""
    from fastmlp.benchmarks import print_bench_table, run_bench
    from fastmlp.data import load_splits
    from fastmlp.engine import thread_limits
    from fastmlp.files import write_json_atomic

    with thread_limits(threads):
        wants_data = epochs or not groups or "inference" in groups
        splits = load_splits(TrainConfig(data_dir=data_dir)) if wants_data else None
        results = run_bench(splits, groups=set(groups) or None, epochs=epochs,
                            anchors=() if no_anchors else (anchors or tuple(ANCHORS)),
                            real_runs=real_runs, data_dir=data_dir, threads=threads,
                            progress=lambda what: click.echo(f"timing {what}", err=True))
    print_bench_table(results)
    if json_path:
        write_json_atomic(json_path, results)


@cli.command("sweep")
@click.argument("sweep_file", metavar="FILE.yaml")
@click.option("--count", type=int, default=None,
              help="Total trials wanted in the study; finished, pruned and failed ones count, "
                   "so the same command again continues. Default: run_cap, or the whole grid.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Worker processes on this machine; each gets cores/workers threads.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage URL, e.g. postgresql://user:pass@host/db to share the study "
                   "between machines. Default: sqlite:///OUTPUT_DIR/study.db.")
@click.option("--engine", type=click.Choice(ENGINES, case_sensitive=False), default="optuna",
              show_default=True, help="optuna (offline) or wandb (W&B server sweep + agents).")
@click.option("--name", default=None,
              help="Sweep (study, wandb group) name. Default: the file's name: or its stem.")
@click.option("--report", "report_only", is_flag=True,
              help="Only write the report (best trials, CSV, plots) of the study so far.")
@click.option("--output-dir", default=None, type=click.Path(file_okay=False),
              help="Where the study, trial runs and report go. Default: sweeps-out/NAME.")
@click.option("--seeds", type=int, default=1, show_default=True, metavar="K",
              help="Train each configuration with K seeds (seed, seed+1, ...) and optimise "
                   "their mean; the report shows mean and spread.")
@setting_option("wandb_mode", default=None, show_default=False,
                help="wandb mode of each trial's run. Default: offline (online for --engine wandb).")
@setting_option("data_dir")
@setting_option("dataset", default=None, show_default=False,
                help="Dataset for every trial, unless the sweep file sets it.")
@setting_option("data", help="Every trial trains on your own data (as `train --data`).")
@setting_option("label_column", default=None, show_default=False)
@setting_option("target")
@setting_option("weight_column")
@setting_option("task", default=None, show_default=False)
@setting_option("test_data")
@setting_option("test_fraction", default=None, show_default=False)
@setting_option("delimiter")
@setting_option("categorical")
@setting_option("drop")
@setting_option("preprocess", default=None)
@setting_option("teacher", help="Every trial learns from this model too (`train --teacher`).")
def sweep(sweep_file, count, workers, storage, engine, name, report_only, output_dir, seeds,
          wandb_mode, **shared):
    """Run a wandb-format sweep FILE.yaml over `train` (Optuna by default).

    No configuration is trained twice: a repeat proposal is answered from the stored result.
    On a terminal a live table shows the progress; otherwise one line per finished trial.
    """
    from fastmlp.sweep import SweepInterrupted, run_sweep

    try:
        run_sweep(sweep_file, count=count, workers=workers, storage=storage, engine=engine,
                  name=name, report=report_only, output_dir=output_dir, seeds=seeds,
                  live=None, wandb_mode=wandb_mode, shared=shared, echo=click.echo)
    except SweepInterrupted as stop:
        # What the study holds and how to continue; main() exits with the code (130).
        click.echo(str(stop) or "interrupted", err=True)
        raise click.exceptions.Exit(130) from None


def main(argv=None):
    """Entry point: run the CLI, turning every user error into one line and an exit code."""
    try:
        argv = _join_many_values(list(sys.argv[1:] if argv is None else argv))
        result = cli.main(args=argv, prog_name="fastmlp", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt) as exc:
        from fastmlp.trainer import TrainingInterrupted

        reason = next((e for e in (exc, exc.__cause__, exc.__context__)
                       if isinstance(e, TrainingInterrupted)), None)
        click.echo(f"interrupted: {reason}" if reason else "interrupted", err=True)
        sys.exit(130)
    except FastMLPError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("error: not enough memory for this configuration (try a smaller -b/--batch_size "
                   "or -sz/--hidden_size)", err=True)
        sys.exit(1)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
