"""report.html: one self-contained page of a sweep's results that opens offline.

plotly's JavaScript is embedded once, inline (no CDN); every figure is a plotly figure:

* parallel coordinates over every searched parameter, coloured by the metric (one line per
  completed trial; categorical parameters at positions 0..n-1 labelled with their values);
* parameter importance (optuna.importance, fANOVA by default) and each parameter's Spearman
  rank correlation with the metric (a string-valued parameter: one bar per value, the
  correlation of "has this value" with the metric);
* the best value over time and over trial numbers;
* the learning curves of the best trials (each run directory's metrics.jsonl, mean over
  seeds; the study's per-epoch values where the files are not on this machine);
* the best trials with mean and spread over seeds and each one's `fastmlp train` command.

Repeats (answered without training, claims.py) appear in none of the figures.
"""
from __future__ import annotations

import html
import json
import math
import warnings
from pathlib import Path

from .figures import sweep_axes

CURVE_TRIALS = 5
HTML_NAME = "report.html"


def write_html_report(trials, spec, out_dir: Path, best: list, counts: dict,
                      repeats: int) -> Path:
    """Write out_dir/report.html; `trials` excludes repeats, `best` is best-first."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    sections = [_header(spec, counts, repeats, best)]
    figures = []
    for title, build in (
            ("Parallel coordinates", lambda: _parallel(spec, complete)),
            ("Parameter importance and correlation with the metric",
             lambda: _importance_and_correlation(spec, complete)),
            ("Best value over time and over trials", lambda: _history(spec, complete)),
            (f"Learning curves of the {CURVE_TRIALS} best trials",
             lambda: _curves(spec, best[:CURVE_TRIALS]))):
        try:
            built = build()
        except Exception as error:  # one figure must never lose the rest of the page
            built = f"could not draw this figure: {type(error).__name__}: {error}"
        if isinstance(built, str):
            sections.append(f"<h2>{html.escape(title)}</h2><p class=note>"
                            f"{html.escape(built)}</p>")
            continue
        for figure in built if isinstance(built, list) else [built]:
            figures.append(figure)
            sections.append((title, figure))
            title = None
    sections.append(_best_table(spec, best))

    body, first = [], True
    for section in sections:
        if isinstance(section, str):
            body.append(section)
            continue
        title, figure = section
        if title:
            body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(figure.to_html(full_html=False, include_plotlyjs=first,
                                   config={"displaylogo": False, "responsive": True}))
        first = False
    page = PAGE.format(title=html.escape(f"sweep {spec.name}"), body="\n".join(body))
    path = Path(out_dir) / HTML_NAME
    from ..files import atomic_writer

    with atomic_writer(path, "w") as handle:
        handle.write(page)
    return path


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
td.text, th.text {{ text-align: left; }}
code {{ font-size: 0.85em; white-space: pre-wrap; }}
.note {{ color: #555; font-style: italic; }}
</style></head><body>
{body}
</body></html>
"""


def _header(spec, counts: dict, repeats: int, best: list) -> str:
    total = sum(counts.values())
    states = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
    lines = [f"<h1>sweep {html.escape(spec.name)}</h1>",
             f"<p>{total} trained trials ({html.escape(states or 'none')}); {repeats} "
             f"repeat proposal(s) answered from stored results without training. Method "
             f"{spec.method}; metric {spec.metric} ({spec.goal}).</p>"]
    if best:
        top = best[0]
        lines.append(f"<p>best: trial {top.number}, {spec.metric} = "
                     f"{html.escape(mean_spread(top))}</p>")
    return "\n".join(lines)


def _parallel(spec, complete: list):
    import plotly.graph_objects as go

    if not complete:
        return "no completed trial yet"
    axes = sweep_axes(spec, complete)
    dimensions = []
    for axis in axes[:-1]:
        positions = [p if p is not None else math.nan for p in axis.positions]
        dimensions.append(dict(label=axis.name, values=positions, tickvals=axis.tickvals,
                               ticktext=axis.ticktext, range=[axis.low, axis.high]))
    values = [t.value for t in complete]
    dimensions.append(dict(label=spec.metric, values=values))
    figure = go.Figure(go.Parcoords(
        line=dict(color=values, colorscale="Viridis", showscale=True,
                  reversescale=spec.goal == "minimize",
                  colorbar=dict(title=dict(text=spec.metric))),
        dimensions=dimensions, customdata=[t.number for t in complete]))
    figure.update_layout(height=520, margin=dict(l=90, r=160, t=60, b=40),
                         width=max(900, 130 * len(dimensions)), autosize=False)
    return figure


def _importance_and_correlation(spec, complete: list):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    varied = [p.name for p in spec.searched
              if len({_hashable(t.params.get(p.name)) for t in complete}) > 1]
    if len(complete) < 3 or not varied:
        return (f"needs at least 3 completed trials with different parameters "
                f"(the study has {len(complete)} completed)")
    importance, why = _importances(spec, complete, varied)
    correlations = _correlations(spec, complete, varied)
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "importance (optuna, fANOVA)" if importance else f"importance: {why}",
        f"Spearman correlation with {spec.metric}"), horizontal_spacing=0.25)
    if importance:
        names = list(importance)[::-1]
        figure.add_trace(go.Bar(x=[importance[n] for n in names], y=names, orientation="h",
                                name="importance", marker_color="#4c72b0"), row=1, col=1)
    labels = [label for label, _ in correlations][::-1]
    rhos = [rho for _, rho in correlations][::-1]
    figure.add_trace(go.Bar(x=rhos, y=labels, orientation="h", name="correlation",
                            marker_color=["#55a868" if r >= 0 else "#c44e52" for r in rhos]),
                     row=1, col=2)
    figure.update_xaxes(range=[-1, 1], row=1, col=2)
    figure.update_layout(height=max(380, 22 * max(len(labels), len(varied)) + 120),
                         showlegend=False, margin=dict(l=160, r=40, t=60, b=40))
    return figure


def _importances(spec, complete: list, varied: list):
    import optuna

    study = optuna.create_study(direction=spec.goal)
    study.add_trials(complete)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, params=varied), None
    except Exception as error:
        return None, f"not computed ({type(error).__name__})"


def _correlations(spec, complete: list, varied: list) -> list:
    """[(label, Spearman rho)]: numbers as they are; each value of a string parameter as an
    indicator. Constant columns (no rank spread) are left out."""
    from scipy.stats import spearmanr

    values = [t.value for t in complete]
    result = []
    for param in spec.searched:
        if param.name not in varied:
            continue
        column = [t.params.get(param.name) for t in complete]
        if all(isinstance(v, (int, float)) for v in column):
            result.append((param.name, column))
            continue
        for choice in sorted({v for v in column if v is not None}, key=str):
            result.append((f"{param.name}={choice}", [1.0 if v == choice else 0.0
                                                      for v in column]))
    rhos = []
    for label, column in result:
        if len(set(column)) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(column, values).statistic
        if rho is not None and math.isfinite(rho):
            rhos.append((label, float(rho)))
    return rhos


def _history(spec, complete: list):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not complete:
        return "no completed trial yet"
    by_time = sorted(complete, key=lambda t: (t.datetime_complete, t.number))
    by_number = sorted(complete, key=lambda t: t.number)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("over time", "over trials"))
    for col, ordered, xs in (
            (1, by_time, [t.datetime_complete for t in by_time]),
            (2, by_number, [t.number for t in by_number])):
        values = [t.value for t in ordered]
        figure.add_trace(go.Scatter(
            x=xs, y=values, mode="markers", name=spec.metric, marker=dict(size=6),
            text=[f"trial {t.number}" for t in ordered], showlegend=col == 1,
            marker_color="#4c72b0"), row=1, col=col)
        figure.add_trace(go.Scatter(x=xs, y=_best_so_far(values, spec.goal), mode="lines",
                                    line=dict(shape="hv", color="#c44e52"), name="best so far",
                                    showlegend=col == 1), row=1, col=col)
    figure.update_xaxes(title_text="time", row=1, col=1)
    figure.update_xaxes(title_text="trial number", row=1, col=2)
    figure.update_yaxes(title_text=spec.metric, row=1, col=1)
    figure.update_layout(height=420, margin=dict(t=60, b=40))
    return figure


def _best_so_far(values: list, goal: str) -> list:
    best, result = None, []
    for value in values:
        if best is None or (value > best if goal == "maximize" else value < best):
            best = value
        result.append(best)
    return result


def _curves(spec, best: list):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not best:
        return "no completed trial yet"
    train_key = "train_loss" if spec.metric != "train_loss" else "train_accuracy"
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        f"{spec.metric} (mean over seeds)", f"{train_key} (mean over seeds)"))
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    for rank, trial in enumerate(best, start=1):
        epochs = trial_epochs(trial)
        name = f"#{rank} trial {trial.number}"
        colour = palette[(rank - 1) % len(palette)]
        for col, key in ((1, spec.metric), (2, train_key)):
            curve = epochs.get(key)
            if curve is None and key == spec.metric:
                curve = [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
            if not curve:
                continue
            figure.add_trace(go.Scatter(x=list(range(1, len(curve) + 1)), y=curve,
                                        mode="lines+markers", name=name, legendgroup=name,
                                        line=dict(color=colour),
                                        showlegend=col == 1), row=1, col=col)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(height=420, margin=dict(t=60, b=40))
    return figure


def trial_epochs(trial) -> dict:
    """metric name -> per-epoch values, the mean over the trial's seeds' metrics.jsonl files
    (empty when they are not on this machine)."""
    run_dirs = trial.user_attrs.get("run_dirs") or (
        [trial.user_attrs["run_dir"]] if trial.user_attrs.get("run_dir") else [])
    runs = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.jsonl"
        try:
            runs.append([json.loads(line) for line in path.read_text().splitlines()
                         if line.strip()])
        except (OSError, ValueError):
            continue
    if not runs:
        return {}
    length = min(len(run) for run in runs)
    keys = set(runs[0][0]) if length else set()
    curves = {}
    for key in keys:
        try:
            curves[key] = [sum(float(run[i][key]) for run in runs) / len(runs)
                           for i in range(length)]
        except (TypeError, ValueError, KeyError):
            continue
    return curves


def _best_table(spec, best: list) -> str:
    if not best:
        return "<h2>Best trials</h2><p class=note>no completed trial yet</p>"
    names = [p.name for p in spec.searched]
    head = "".join(f"<th class=text>{html.escape(n)}</th>" for n in names)
    rows = []
    for rank, trial in enumerate(best, start=1):
        test = trial.user_attrs.get(spec.test_figure)
        test_std = trial.user_attrs.get(f"{spec.test_figure}_std")
        test_text = "" if test is None else (
            f"{test:.4f}" + (f" ± {test_std:.4f}" if test_std is not None else ""))
        cells = "".join(f"<td class=text>{html.escape(format_param(trial.params.get(n)))}</td>"
                        for n in names)
        command = html.escape(trial.user_attrs.get("command", ""))
        rows.append(f"<tr><td>{rank}</td><td>{trial.number}</td>"
                    f"<td>{html.escape(mean_spread(trial, with_seeds=False))}</td>"
                    f"<td>{test_text}</td>{cells}"
                    f"<td class=text><code>{command}</code></td></tr>")
    seeds = max((t.user_attrs.get("seeds", 1) for t in best), default=1)
    spread = "" if seeds == 1 else f" (mean ± std of {seeds} seeds)"
    return (f"<h2>Best trials</h2><table><tr><th>rank</th><th>trial</th>"
            f"<th>{html.escape(spec.metric + spread)}</th><th>{spec.test_figure}{spread}</th>"
            f"{head}"
            f"<th class=text>command</th></tr>{''.join(rows)}</table>")


def mean_spread(trial, with_seeds: bool = True) -> str:
    """The trial's value, and with several seeds its std over them; with_seeds adds how many
    seeds (the text report's "best:" line and report.html's header; a table column already
    names them)."""
    seeds = trial.user_attrs.get("seeds", 1)
    spread = trial.user_attrs.get("value_std")
    if seeds in (None, 1) or spread is None:
        return f"{trial.value:.4f}"
    text = f"{trial.value:.4f} ± {spread:.4f}"
    return text + (f" (mean ± std of {seeds} seeds)" if with_seeds else "")


def format_param(value) -> str:
    """A parameter's value in a table cell: floats to 6 significant digits, None blank."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _hashable(value):
    return json.dumps(value, default=str)
