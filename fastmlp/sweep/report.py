"""A sweep's results: best-trials table, reproducing command, CSV of all trials, plots.

Written into the sweep's output directory at the end of `fastmlp sweep` (also when it is
interrupted) and by `fastmlp sweep FILE --report`:

    report.html                one self-contained page (html_report.py): parallel coordinates,
                               importance and correlation, best value over time, learning
                               curves, best trials with their commands; opens offline
    report.txt                 the best-trials table and the command of the best trial
    best_command.txt           `fastmlp train ...` reproducing the best trial
    trials.csv                 every trial: number, state, value (mean over seeds) and its
                               std, params, repeat_of (answered without training), run dir...
    param_importances.png      optuna.visualization.matplotlib (needs >= 2 finished trials)
    parallel_coordinate.png    figures.py: sized by the number of parameters, no overlaps

Repeats (claims.py) are listed in trials.csv and counted, but left out of the best trials
and the figures: their results are their original trials'.
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .html_report import format_param, mean_spread, write_html_report

BEST_ROWS = 10


@dataclass
class Report:
    out_dir: Path
    counts: dict                        # state name -> number of trials
    best_number: Optional[int] = None
    best_value: Optional[float] = None
    best_command: Optional[str] = None
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # why a plot was skipped, etc.


def write_report(study, spec, out_dir, echo=print) -> Report:
    """Write every report file; echo the table and the best command."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from .claims import is_repeat

    every = study.get_trials(deepcopy=False)
    trials = [t for t in every if not is_repeat(t)]
    repeats = len(every) - len(trials)
    report = Report(out_dir=out_dir, counts=_count_states(trials))

    report.files.append(write_trials_csv(every, spec, out_dir / "trials.csv"))
    best = best_trials(trials, spec.goal)
    table_text = render_best_table(best, spec)
    summary = _summary_line(report.counts, spec)
    if repeats:
        summary += (f"; {repeats} repeat proposal(s) answered from stored results without "
                    "training")
    lines = [summary, table_text]
    if best:
        top = best[0]
        report.best_number, report.best_value = top.number, top.value
        report.best_command = top.user_attrs.get("command")
        lines.append(f"best: trial {top.number}, {spec.metric} = {mean_spread(top)}")
        if report.best_command:
            lines.append(f"reproduce it with:\n  {report.best_command}")
            (out_dir / "best_command.txt").write_text(report.best_command + "\n")
            report.files.append(out_dir / "best_command.txt")
    else:
        lines.append("no completed trial yet")
    text = "\n".join(lines)
    (out_dir / "report.txt").write_text(text + "\n")
    report.files.append(out_dir / "report.txt")
    echo(text)

    try:
        report.files.append(write_html_report(trials, spec, out_dir, best_trials(
            trials, spec.goal, limit=None), report.counts, repeats))
    except Exception as error:  # the page must never lose the rest of the report
        note = f"report.html skipped: {type(error).__name__}: {error}"
        report.notes.append(note)
        echo(note)
    for path, note in write_plots(trials, spec, out_dir):
        if path is not None:
            report.files.append(path)
        if note:
            report.notes.append(note)
            echo(note)
    echo(f"report written to {out_dir}/ ({', '.join(p.name for p in report.files)})")
    return report


def best_trials(trials, goal: str, limit: Optional[int] = BEST_ROWS) -> list:
    """Completed trials that trained (not repeats), best first."""
    from optuna.trial import TrialState

    from .claims import is_repeat

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and not is_repeat(t)]
    return sorted(done, key=lambda t: t.value, reverse=(goal == "maximize"))[:limit]


def render_best_table(best: list, spec) -> str:
    """The best trials as a rich table, returned as plain text."""
    from rich.console import Console
    from rich.table import Table

    names = [p.name for p in spec.searched]
    table = Table(title=f"best trials of sweep {spec.name} ({spec.metric}, {spec.goal})")
    seeds = max((t.user_attrs.get("seeds", 1) for t in best), default=1)
    metric = spec.metric if seeds == 1 else f"{spec.metric} (mean ± std, {seeds} seeds)"
    for column in ["rank", "trial", metric, spec.test_figure] + names + ["seconds"]:
        table.add_column(column, justify="right" if column not in names else "left")
    for rank, trial in enumerate(best, start=1):
        test = trial.user_attrs.get(spec.test_figure)
        seconds = trial.duration.total_seconds() if trial.duration else None
        table.add_row(
            str(rank), str(trial.number), mean_spread(trial, with_seeds=False),
            f"{test:.4f}" if test is not None else "",
            *[format_param(trial.params.get(name)) for name in names],
            f"{seconds:.0f}" if seconds is not None else "")
    # Wide enough never to truncate a column: the table is plain text for files and logs.
    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(table)
    return console.file.getvalue().rstrip()


def write_trials_csv(trials, spec, path: Path) -> Path:
    """One row per trial, every state, in trial-number order."""
    names = [p.name for p in spec.searched]
    extra = sorted({k for t in trials for k in t.params} - set(names))
    attr_columns = ("repeat_of", "seeds", "value_std", spec.test_figure,
                    f"{spec.test_figure}_std", "run_dir", "host", "pid", "worker", "fail_reason",
                    "command")
    header = (["number", "state", spec.metric, "duration_seconds", "datetime_start",
               "datetime_complete", "epochs_reported"] + names + extra + list(attr_columns))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for trial in sorted(trials, key=lambda t: t.number):
            attrs = trial.user_attrs
            writer.writerow(
                [trial.number, trial.state.name, _blank(trial.value),
                 _blank(trial.duration.total_seconds() if trial.duration else None),
                 _blank(trial.datetime_start), _blank(trial.datetime_complete),
                 len(trial.intermediate_values)]
                + [_blank(trial.params.get(name)) for name in names + extra]
                + [_blank(attrs.get(key)) for key in attr_columns])
    return path


def write_plots(trials, spec, out_dir: Path) -> list:
    """Parameter importances and parallel coordinates as PNGs: [(path or None, note)].
    `trials` holds no repeats."""
    import optuna
    from optuna.trial import TrialState

    from .figures import write_parallel_coordinates_png

    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    varied = [p.name for p in spec.searched
              if len({str(t.params.get(p.name)) for t in completed}) > 1]
    if len(completed) < 2 or not varied:
        return [(None, "plots skipped: they need two completed trials with different "
                       "parameters")]

    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    study = optuna.create_study(direction=spec.goal)
    study.add_trials(completed)

    def importances(path):
        # Optuna switches matplotlib to its grey "ggplot" style for good: the context
        # keeps that to this plot, whose own grey background is then made white.
        with warnings.catch_warnings(), plt.style.context("default"):
            warnings.simplefilter("ignore")  # "experimental" and small-sample warnings
            axes = optuna_plots.plot_param_importances(study, params=varied,
                                                       target_name=spec.metric)
        axes.set_facecolor("white")
        axes.grid(color="0.9")
        figure = axes.figure
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)

    results = []
    plots = (("param_importances.png", importances),
             ("parallel_coordinate.png",
              lambda path: write_parallel_coordinates_png(spec, completed, path)))
    for filename, plot in plots:
        path = out_dir / filename
        try:
            plot(path)
            results.append((path, None))
        except Exception as error:  # a plot must never lose the rest of the report
            plt.close("all")
            results.append((None, f"{filename} skipped: {type(error).__name__}: {error}"))
    return results


def _count_states(trials) -> dict:
    counts: dict = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _summary_line(counts: dict, spec) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
    return f"sweep {spec.name}: {total} trials ({parts or 'none'})"


def _blank(value):
    return "" if value is None else value
