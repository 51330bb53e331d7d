"""fastmlp command line: `fastmlp ...` and `python cli.py ...` are the same program.

Every user error ends as ONE line `error: <what is wrong>` and a non-zero exit.
"""
from __future__ import annotations

import sys

import click

from fastmlp.config import (ACTIVATIONS, DATASETS, DTYPES, LOSSES, OPTIMIZERS, WANDB_MODES,
                            WEIGHT_INITS, TrainConfig)
from fastmlp.errors import FastMLPError
from fastmlp.sweep import ENGINES  # cheap: no optuna/wandb

DEFAULTS = TrainConfig()


class _SpecChoice(click.Choice):
    """Case-insensitive choice that returns, and shows in help and errors, the registry's
    spelling (`ReLU`, `Xavier`); click >= 8.2 would show the case-folded `relu`, `xavier`."""

    def get_metavar(self, param, ctx=None):
        return f"[{'|'.join(self.choices)}]"

    def get_invalid_choice_message(self, value, ctx):
        return f"{value!r} is not one of {', '.join(map(repr, self.choices))}."


def _choice(registry):
    return _SpecChoice(registry, case_sensitive=False)


# (short, long, type, help) for the assignment's flags, in its order; defaults from TrainConfig.
TRAIN_FLAGS = [
    ("-wp", "--wandb_project", str, "Weights & Biases project the run is logged to."),
    ("-we", "--wandb_entity", str, "Weights & Biases entity (user or team)."),
    ("-d", "--dataset", _choice(DATASETS), "Dataset to train on."),
    ("-e", "--epochs", int, "Number of passes over the training set."),
    ("-b", "--batch_size", int, "Training examples per optimizer step."),
    ("-l", "--loss", _choice(LOSSES), "Loss on the softmax output."),
    ("-o", "--optimizer", _choice(OPTIMIZERS), "Update rule."),
    ("-lr", "--learning_rate", float, "Learning rate of every optimizer."),
    ("-m", "--momentum", float, "Momentum of momentum and nag."),
    ("-beta", "--beta", float, "Decay of the squared-gradient average in rmsprop."),
    ("-beta1", "--beta1", float, "First-moment decay of adam and nadam."),
    ("-beta2", "--beta2", float, "Second-moment decay of adam and nadam."),
    ("-eps", "--epsilon", float, "Epsilon in the denominators of rmsprop, adam, nadam."),
    ("-w_d", "--weight_decay", float, "L2 weight decay on the weights (not biases)."),
    ("-w_i", "--weight_init", _choice(WEIGHT_INITS),
     "Weight initialisation: random N(0, 0.1^2), Xavier (Glorot uniform) or He (normal)."),
    ("-nhl", "--num_layers", int, "Number of hidden layers."),
    ("-sz", "--hidden_size", int, "Units in every hidden layer."),
    ("-a", "--activation", _choice(ACTIVATIONS), "Activation of the hidden layers."),
]


def train_options(command):
    """Attach the assignment's flags and fastmlp's extras to a click command."""
    extras = [
        click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True,
                     help="Seed of initialisation, shuffling and the validation split."),
        click.option("--val-fraction", "val_fraction", type=float, default=DEFAULTS.val_fraction,
                     show_default=True, help="Share of the training set held out for validation."),
        click.option("--output-dir", "output_dir", default=DEFAULTS.output_dir, show_default=True,
                     help="Run directories are created inside it."),
        click.option("--wandb-mode", "wandb_mode", type=_choice(WANDB_MODES),
                     default=DEFAULTS.wandb_mode, show_default=True,
                     help="offline writes local wandb files (`wandb sync` later); online needs "
                          "credentials; disabled logs nothing to wandb."),
        click.option("--data-dir", "data_dir", default=None,
                     help="Directory holding the four IDX .gz files (else: $FASTMLP_DATA_DIR, "
                          "the cache, /usr/share/datasets, download)."),
        click.option("--dtype", type=_choice(DTYPES), default=DEFAULTS.dtype, show_default=True,
                     help="Floating-point precision of the whole computation."),
        click.option("--threads", type=int, default=None,
                     help="Numba and BLAS threads (default: all cores)."),
        click.option("--progress/--no-progress", default=None,
                     help="Live progress bar (default: when writing to a terminal)."),
    ]
    for decorator in reversed(extras):
        command = decorator(command)
    for short, long, kind, text in reversed(TRAIN_FLAGS):
        field = long.lstrip("-")
        command = click.option(short, long, field, type=kind, default=getattr(DEFAULTS, field),
                               show_default=True, help=text)(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """fastmlp: train multilayer perceptrons on a CPU, fast."""


@cli.command()
@train_options
@click.option("--resume", metavar="RUN_DIR", default=None,
              help="Continue the interrupted run in RUN_DIR from its checkpoint.npz, with the "
                   "settings it started with (only --threads, --data-dir, --wandb-mode, -wp, "
                   "-we may be given too).")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Draw learning curves and the test confusion matrix (PNG) into the run "
                   "directory at the end (and log them to wandb).")
def train(progress, resume, plots, **flags):
    """Train an MLP on Fashion-MNIST or MNIST and write its results to a run directory."""
    from fastmlp.trainer import train as run_training

    config = TrainConfig(**flags) if resume is None else _resume_config(resume, flags)
    result = run_training(config, progress=progress, resume_dir=resume, plots=plots)
    summary = result.summary
    click.echo(f"test accuracy {summary['test_accuracy']:.4f}  test loss "
               f"{summary['test_loss']:.4f}  ->  {result.run_dir}")
    _print_confusion_matrix(summary["confusion_matrix"], summary["class_names"])


def _resume_config(run_dir, flags):
    """The saved configuration of run_dir, with the machine-local flags typed on the line."""
    from click.core import ParameterSource

    from fastmlp.checkpoint import RESUME_OVERRIDABLE, load_resumable, resume_config
    from fastmlp.config import flag_name
    from fastmlp.errors import ConfigError

    context = click.get_current_context()
    typed = {name: value for name, value in flags.items()
             if context.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    refused = [name for name in typed if name not in RESUME_OVERRIDABLE]
    if refused:
        raise ConfigError(f"{flag_name(refused[0])}: --resume continues a run with the settings "
                          "it started with; only --threads, --data-dir, --wandb-mode, -wp and -we "
                          "may be given with it")
    return resume_config(load_resumable(run_dir).config, typed)


@cli.command()
@click.argument("model", metavar="MODEL.npz")
@click.option("-d", "--dataset", type=_choice(DATASETS), default=None,
              help="Test set to evaluate on (default: the dataset the model was trained on).")
@click.option("--data-dir", "data_dir", default=None,
              help="Directory holding the dataset's IDX .gz files (as for train).")
@click.option("--plot", metavar="PATH", default=None,
              help="Confusion-matrix PNG to write (default: beside the model, "
                   "evaluate_<dataset>_confusion_matrix.png).")
@click.option("--no-plot", is_flag=True, help="Write no PNG.")
def evaluate(model, dataset, data_dir, plot, no_plot):
    """Test loss, accuracy, per-class accuracy and confusion matrix of a saved model."""
    from pathlib import Path

    from fastmlp.inference import evaluate_model
    from fastmlp.plots import confusion_matrix_png

    result = evaluate_model(model, dataset, data_dir)
    if not no_plot:
        chosen = plot
        plot = Path(plot) if plot else (Path(model).parent /
                                        f"evaluate_{result.dataset}_confusion_matrix.png")
        try:
            confusion_matrix_png(result.matrix, result.class_names, plot,
                                 f"{result.dataset} test set: accuracy {result.accuracy:.4f}")
        except FastMLPError as exc:
            hint = "" if chosen else " (choose another place with --plot PATH, or --no-plot)"
            raise FastMLPError(f"{exc}{hint}") from None
    click.echo(f"model {model}  ({result.model.description})")
    click.echo(f"{result.dataset} test set: {result.count} images  loss {result.loss:.4f}  "
               f"accuracy {result.accuracy:.4f}")
    _print_per_class(result.matrix, result.class_names, result.per_class_accuracy)
    _print_confusion_matrix(result.matrix.tolist(), result.class_names)
    if not no_plot:
        click.echo(f"confusion matrix -> {plot}")


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
@click.option("-d", "--dataset", type=_choice(DATASETS), default=DEFAULTS.dataset,
              show_default=True, help="Dataset to show.")
@click.option("--data-dir", "data_dir", default=None,
              help="Directory holding the dataset's IDX .gz files (as for train).")
@click.option("--output-dir", "output_dir", default=DEFAULTS.output_dir, show_default=True,
              help="Where samples_<dataset>.png is written.")
@click.option("-wp", "--wandb_project", default=DEFAULTS.wandb_project, show_default=True,
              help="Weights & Biases project the image is logged to.")
@click.option("-we", "--wandb_entity", default=DEFAULTS.wandb_entity, show_default=True,
              help="Weights & Biases entity (user or team).")
@click.option("--wandb-mode", "wandb_mode", type=_choice(WANDB_MODES),
              default=DEFAULTS.wandb_mode, show_default=True,
              help="offline, online (needs credentials) or disabled.")
def samples(dataset, data_dir, output_dir, wandb_project, wandb_entity, wandb_mode):
    """One training image per class in a grid (assignment question 1), as a PNG and in wandb."""
    from fastmlp.plots import samples as draw_samples

    path = draw_samples(dataset, data_dir, output_dir, wandb_mode, wandb_project, wandb_entity)
    click.echo(f"one image per class -> {path}")


def _print_per_class(matrix, class_names, accuracy):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per-class accuracy")
    for name in ("class", "images", "correct", "accuracy"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for index, name in enumerate(class_names):
        table.add_row(f"{index} {name}", str(int(matrix[index].sum())),
                      str(int(matrix[index, index])), f"{accuracy[index]:.4f}")
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
                                 "optimizer"]),
              help="Only these kernel groups (repeatable; default: all).")
@click.option("--epochs/--no-epochs", default=True, show_default=True,
              help="Also time whole epochs on Fashion-MNIST (seed config, batch 256, wide).")
@click.option("--torch/--no-torch", "with_torch", default=True, show_default=True,
              help="Time the same epoch in PyTorch when it is installed.")
@click.option("--threads", type=int, default=None, help="Numba and BLAS threads.")
@click.option("--data-dir", "data_dir", default=None, help="Where the IDX files are.")
def bench(json_path, groups, epochs, with_torch, threads, data_dir):
    """Time every Numba kernel and whole epochs against the NumPy reference."""
    from fastmlp.benchmarks import print_bench_table, run_bench
    from fastmlp.files import write_json_atomic
    from fastmlp.trainer import load_splits, thread_limits

    with thread_limits(threads):
        splits = load_splits(TrainConfig(data_dir=data_dir)) if epochs else None
        results = run_bench(splits, groups=set(groups) or None, epochs=epochs,
                            with_torch=with_torch,
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
@click.option("--wandb-mode", type=click.Choice(WANDB_MODES, case_sensitive=False), default=None,
              help="wandb mode of each trial's run. Default: offline (online for --engine wandb).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Directory holding the dataset's IDX files (passed to train).")
@click.option("-d", "--dataset", type=click.Choice(DATASETS, case_sensitive=False), default=None,
              help="Dataset for every trial, unless the sweep file sets it.")
def sweep(sweep_file, count, workers, storage, engine, name, report_only, output_dir,
          wandb_mode, data_dir, dataset):
    """Run a wandb-format sweep FILE.yaml over `train` (Optuna by default)."""
    from fastmlp.sweep import SweepInterrupted, run_sweep

    try:
        run_sweep(sweep_file, count=count, workers=workers, storage=storage, engine=engine,
                  name=name, report=report_only, output_dir=output_dir,
                  wandb_mode=wandb_mode and wandb_mode.lower(), data_dir=data_dir,
                  dataset=dataset and _canonical_dataset(dataset), echo=click.echo)
    except SweepInterrupted as stop:
        # What the study holds and how to continue; main() exits with the code (130).
        click.echo(str(stop) or "interrupted", err=True)
        raise click.exceptions.Exit(130) from None


def _canonical_dataset(dataset: str) -> str:
    return next(name for name in DATASETS if name.lower() == dataset.lower())


def main(argv=None):
    """Entry point: run the CLI, turning every user error into one line and an exit code."""
    try:
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
