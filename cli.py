"""fastmlp command line: `fastmlp ...` and `python cli.py ...` are the same program.

Every user error ends as ONE line `error: <what is wrong>` and a non-zero exit.
"""
from __future__ import annotations

import sys

import click

from fastmlp.config import (ACTIVATIONS, DATASETS, DTYPES, LOSSES, OPTIMIZERS, WANDB_MODES,
                            WEIGHT_INITS, TrainConfig)
from fastmlp.errors import FastMLPError

DEFAULTS = TrainConfig()


def _choice(registry):
    return click.Choice(registry, case_sensitive=False)


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
def train(progress, **flags):
    """Train an MLP on Fashion-MNIST or MNIST and write its results to a run directory."""
    from fastmlp.trainer import train as run_training

    result = run_training(TrainConfig(**flags), progress=progress)
    summary = result.summary
    click.echo(f"test accuracy {summary['test_accuracy']:.4f}  test loss "
               f"{summary['test_loss']:.4f}  ->  {result.run_dir}")
    _print_confusion_matrix(summary["confusion_matrix"], summary["class_names"])


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


def main(argv=None):
    """Entry point: run the CLI, turning every user error into one line and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="fastmlp", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except FastMLPError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
