"""What `fastmlp sweep` shows while its workers train: the study's progress.

The workers write their own output (epoch lines, optuna's messages) to log files in the
sweep's workers/ directory; the supervising process reads the study every STATUS_SECONDS and

* on a terminal: one rich table that updates in place (trials done of --count, complete,
  running, pruned, failed, repeats avoided, best so far, trials per hour, time left) and the
  last few finished trials below it;
* otherwise (a pipe, a log file): one plain line per finished trial.

The status covers the whole study, so trials of other machines sharing it show too.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

STATUS_SECONDS = 1.0
RECENT_ROWS = 5


@dataclass
class SweepStatus:
    """Counts over the study's trials, and the rates of this session."""

    total: int                      # --count
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    repeats: int = 0
    best_value: Optional[float] = None
    best_number: Optional[int] = None
    ran_here: int = 0               # trained trials finished since this command started
    seconds: float = 0.0            # since this command started

    @property
    def done(self) -> int:
        """Trained trials that have finished (they use up --count)."""
        return self.complete + self.pruned + self.failed

    @property
    def trials_per_hour(self) -> Optional[float]:
        if self.ran_here == 0 or self.seconds <= 0:
            return None
        return self.ran_here * 3600.0 / self.seconds

    @property
    def seconds_left(self) -> Optional[float]:
        rate = self.trials_per_hour
        if rate is None:
            return None
        return max(0, self.total - self.done) * 3600.0 / rate


def status_of(trials, total: int, goal: str, started_at, seconds: float) -> SweepStatus:
    """The SweepStatus of a list of optuna FrozenTrials (started_at: a naive datetime)."""
    from .claims import is_repeat

    status = SweepStatus(total=total, seconds=seconds)
    for trial in trials:
        state = trial.state.name
        if is_repeat(trial):
            status.repeats += state != "RUNNING"
            continue
        if state == "RUNNING":
            status.running += 1
            continue
        if state == "WAITING":
            continue
        status.complete += state == "COMPLETE"
        status.pruned += state == "PRUNED"
        status.failed += state == "FAIL"
        if trial.datetime_complete is not None and trial.datetime_complete >= started_at:
            status.ran_here += 1
        if state == "COMPLETE" and trial.value is not None and (
                status.best_value is None or
                (trial.value > status.best_value if goal == "maximize"
                 else trial.value < status.best_value)):
            status.best_value, status.best_number = trial.value, trial.number
    return status


def trial_line(trial, metric: str) -> str:
    """One plain line for a finished trial."""
    from ..metrics import test_figure_of
    from .claims import REPEAT_OF

    state = trial.state.name.lower()
    attrs = trial.user_attrs
    params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    value = ""
    if trial.value is not None and state != "pruned":
        spread = attrs.get("value_std")
        value = f" {metric}={trial.value:.4f}" + (f" (std {spread:.4f})" if spread else "")
    elif trial.intermediate_values:
        step = max(trial.intermediate_values)
        value = f" after epoch {step}: {metric}={trial.intermediate_values[step]:.4f}"
    if REPEAT_OF in attrs:
        answer = (f"{attrs['fail_reason']}" if state == "fail" and attrs.get("fail_reason")
                  else f"answered from trial {attrs[REPEAT_OF]}: {state}{value}")
        return f"trial {trial.number} repeat, not trained ({answer}): {params}"
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    test_figure = test_figure_of(metric)
    test = attrs.get(test_figure)
    test_text = f" {test_figure}={test:.4f}" if test is not None and state == "complete" else ""
    reason = f" ({attrs['fail_reason']})" if state == "fail" and attrs.get("fail_reason") else ""
    where = f" [worker {attrs['worker']}]" if "worker" in attrs else ""
    return (f"trial {trial.number} {state}{value}{test_text} in {seconds:.1f}s{where}: "
            f"{params}{reason}")


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def duration_text(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def status_table(status: SweepStatus, name: str, metric: str, recent: list):
    """The live view: the status table and the last finished trials (a rich renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"sweep {name}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    best = ("-" if status.best_value is None
            else f"{status.best_value:.4f} (trial {status.best_number})")
    rate = status.trials_per_hour
    for what, value in (
            ("trials finished", f"{status.done} of {status.total}"),
            ("complete", status.complete), ("running", status.running),
            ("pruned", status.pruned), ("failed", status.failed),
            ("repeats avoided", status.repeats), (f"best {metric}", best),
            ("trials per hour", "-" if rate is None else f"{rate:.0f}"),
            ("time left", duration_text(status.seconds_left))):
        table.add_row(what, str(value))
    if not recent:
        return table
    latest = Table(title="last finished trials", show_header=False, title_justify="left",
                   box=None)
    latest.add_column("trial", overflow="fold")
    for line in recent[-RECENT_ROWS:]:
        latest.add_row(Text(line))  # plain text: "[worker 1]" is not markup
    return Group(table, latest)


class SweepView:
    """Watches the study while workers run: live table on a terminal, plain lines otherwise.

    update() is called by the supervisor's loop; it reads the study at most every
    STATUS_SECONDS. echo(line) prints a message (above the live table when there is one)."""

    def __init__(self, study, spec, total: int, echo: Callable[[str], None],
                 live: Optional[bool] = None):
        import datetime

        self.study, self.spec, self.total = study, spec, total
        self._echo = echo
        self.live = sys.stdout.isatty() if live is None else live
        self._started = time.monotonic()
        self._started_at = datetime.datetime.now()
        self._seen = {t.number for t in study.get_trials(deepcopy=False)
                      if t.state.name not in ("RUNNING", "WAITING")}
        self._recent: list = []
        self._last_read = 0.0
        self._live = None
        self.status = None

    def __enter__(self) -> "SweepView":
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._renderable(), console=Console(file=sys.stdout),
                              refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.update(force=True)
        except Exception:  # the view must never hide the sweep's own outcome
            pass
        if self._live is not None:
            self._live.__exit__(*exc_info)
            self._live = None

    def echo(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
        else:
            self._echo(line)

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_read < STATUS_SECONDS:
            return
        self._last_read = now
        trials = self.study.get_trials(deepcopy=False)
        for trial in sorted(trials, key=lambda t: t.number):
            if trial.number in self._seen or trial.state.name in ("RUNNING", "WAITING"):
                continue
            self._seen.add(trial.number)
            line = trial_line(trial, self.spec.metric)
            if self._live is not None:
                self._recent.append(line)
            else:
                self._echo(line)
        self.status = status_of(trials, self.total, self.spec.goal, self._started_at,
                                now - self._started)
        if self._live is not None:
            self._live.update(self._renderable())

    def _renderable(self):
        status = self.status or SweepStatus(total=self.total)
        return status_table(status, self.spec.name, self.spec.metric, self._recent)
