"""How a sweep's parameters are put on an axis, and the parallel-coordinates PNG.

`axis_of(param, values)` encodes one swept parameter as numbers with tick labels: a
categorical parameter (strings or numbers) takes the positions 0..n-1 in the file's order,
a log range its log10, any other range its own values. The HTML report (html_report.py)
and the PNG share it.

The PNG is drawn with matplotlib (Agg) to stay readable when pasted into a report: its width
grows with the number of parameters, long labels are shortened, and after drawing, any label
that would overlap one already placed is hidden (`declutter`), so labels never overlap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

INCHES_PER_AXIS = 1.7
MIN_WIDTH, HEIGHT = 7.0, 5.5
LABEL_CHARS = 16          # longer categorical labels are shortened with an ellipsis
NUMERIC_TICKS = 5


@dataclass
class Axis:
    """One parameter as numbers: position of each trial's value, and the tick labels."""

    name: str
    positions: list           # one number per trial (None where a trial lacks the value)
    tickvals: list
    ticktext: list
    low: float
    high: float
    categorical: bool = False
    log: bool = False


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def shorten(text: str, chars: int = LABEL_CHARS) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "\u2026"


def axis_of(param, values: list) -> Axis:
    """The axis of a SweepParam for the trials' values of it."""
    if param.distribution in ("categorical", "constant"):
        choices = list(param.values)
        index = {choice: i for i, choice in enumerate(choices)}
        positions = [index.get(value) if value is not None else None for value in values]
        return Axis(param.name, positions, list(range(len(choices))),
                    [format_value(c) for c in choices], 0.0, float(max(len(choices) - 1, 1)),
                    categorical=True)
    low, high, log, _ = param.optuna_range()
    if log:
        positions = [math.log10(v) if v is not None and v > 0 else None for v in values]
        lo, hi = math.log10(low), math.log10(high)
        ticks = _even(lo, hi)
        return Axis(param.name, positions, ticks, [f"{10 ** t:.2g}" for t in ticks], lo, hi,
                    log=True)
    positions = [float(v) if v is not None else None for v in values]
    ticks = _even(float(low), float(high))
    if param.draws_int:
        ticks = sorted({round(t) for t in ticks})
    return Axis(param.name, positions, ticks, [format_value(t) for t in ticks],
                float(low), float(high))


def metric_axis(name: str, values: list) -> Axis:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    ticks = _even(lo, hi)
    return Axis(name, list(values), ticks, [f"{t:.4g}" for t in ticks], lo, hi)


def _even(low: float, high: float) -> list:
    if high <= low:
        return [low]
    return [low + (high - low) * i / (NUMERIC_TICKS - 1) for i in range(NUMERIC_TICKS)]


def _normalised(axis: Axis, position: Optional[float]) -> Optional[float]:
    if position is None:
        return None
    if axis.high <= axis.low:
        return 0.5
    return (position - axis.low) / (axis.high - axis.low)


def sweep_axes(spec, trials) -> list:
    """The axes of every searched parameter, then the metric's, for COMPLETE trials."""
    axes = [axis_of(p, [t.params.get(p.name) for t in trials]) for p in spec.searched]
    axes.append(metric_axis(spec.metric, [t.value for t in trials]))
    return axes


# --------------------------------------------------------------------------- the PNG

def parallel_coordinates_figure(spec, trials):
    """A matplotlib figure of the completed trials over every searched parameter."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    axes = sweep_axes(spec, trials)
    count = len(axes)
    figure, ax = plt.subplots(figsize=(max(MIN_WIDTH, INCHES_PER_AXIS * count + 1.5), HEIGHT))
    values = [t.value for t in trials]
    norm = colors.Normalize(min(values), max(values)) if values else colors.Normalize(0, 1)
    cmap = matplotlib.colormaps["viridis"]
    xs = list(range(count))
    # worst first, so the best lines are drawn on top
    order = sorted(range(len(trials)), key=lambda i: values[i],
                   reverse=(spec.goal == "minimize"))
    for i in order:
        ys = [_normalised(axis, axis.positions[i]) for axis in axes]
        points = [(x, y) for x, y in zip(xs, ys) if y is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=cmap(norm(values[i])),
                alpha=0.6, linewidth=1.2)
    ticks = []
    for x, axis in zip(xs, axes):
        ax.axvline(x, color="0.3", linewidth=1.0, zorder=0)
        for value, text in zip(axis.tickvals, axis.ticktext):
            y = _normalised(axis, value)
            ticks.append(ax.text(x - 0.04, y, shorten(text), ha="right", va="center",
                                 fontsize=8, color="0.15"))
    ax.set_xticks(xs)
    ax.set_xticklabels([axis.name for axis in axes], fontsize=9)
    ax.set_xlim(-0.75, count - 1 + 0.25)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"sweep {spec.name}: {len(trials)} completed trials, coloured by "
                 f"{spec.metric}", fontsize=10)
    colorbar = figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    colorbar.set_label(spec.metric, fontsize=9)
    colorbar.ax.tick_params(labelsize=8)
    figure.tight_layout()
    declutter(figure, ticks)
    return figure


def declutter(figure, optional_texts: list) -> None:
    """Hide each optional text (in order) that overlaps a text already shown; the figure's
    other texts (axis names, title, colour bar) always stay."""
    renderer = figure.canvas.get_renderer()
    optional = {id(t) for t in optional_texts}
    kept = [t.get_window_extent(renderer) for t in visible_texts(figure)
            if id(t) not in optional]
    for text in optional_texts:
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            text.set_visible(False)
        else:
            kept.append(box)


def visible_texts(figure) -> list:
    """Every text the figure draws: visible, non-empty, inside the canvas."""
    from matplotlib.text import Text

    texts = []
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        axes = text.axes
        if axes is not None and text in axes.get_xticklabels() + axes.get_yticklabels():
            # tick labels outside the axis range are not drawn
            if not _tick_shown(axes, text):
                continue
        texts.append(text)
    return texts


def _tick_shown(axes, text) -> bool:
    x, y = text.get_position()
    if text in axes.get_xticklabels():
        low, high = sorted(axes.get_xlim())
        return low <= x <= high
    low, high = sorted(axes.get_ylim())
    return low <= y <= high


def write_parallel_coordinates_png(spec, trials, path) -> None:
    import matplotlib.pyplot as plt

    figure = parallel_coordinates_figure(spec, trials)
    try:
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
