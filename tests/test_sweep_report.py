"""Issue H: sweeps never train a configuration twice, --seeds K, the live view, readable
PNGs and report.html (loaded in a real headless Chromium).

One real sweep (module fixture, `python cli.py sweep`, 2 workers, 2 seeds, a 4-point space
asked for 10 trials) feeds most tests; the repeat logic is also tested in-process with a
fake train and a sampler that always proposes the same point.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from clirunner import (REPO, open_study, skip_or_fail, spec_of, sweep_program, sweep_yaml,
                       worker_job)
from fastmlp.errors import FastMLPError
from fastmlp.sweep.storage import create_or_load_study

FINITE = sweep_yaml("bayes", 2, 256, name="finite", metric="val_accuracy",
                    hidden_size="{values: [4, 8]}", activation="{values: [relu, tanh]}")


# =============================================================================== in-process

def fake_train(calls: list):
    """A stand-in for trainer.train: a value from the configuration, one record per epoch."""
    def train(config, epoch_callback=None, progress=None, plots=None):
        calls.append(config)
        value = 0.5 + config.hidden_size / 100 + config.seed / 10000
        records = [{"val_accuracy": value - 0.01 * (config.epochs - e), "train_loss": 1.0 / e}
                   for e in range(1, config.epochs + 1)]
        run_dir = Path(config.output_dir) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        for record in records:
            if epoch_callback is not None:
                epoch_callback(record)
        return SimpleNamespace(run_dir=run_dir, summary={"epochs": records,
                                                         "test_accuracy": value - 0.02})
    return train


def test_a_sampler_that_always_proposes_the_same_point_trains_each_point_once(
        tmp_path, monkeypatch):
    """TPE converging on a discrete space proposes the best point again and again: each
    repeat is answered from the stored result, the worker steers to untried points, and the
    sweep ends when the 6 points are used up, although --count asked for 20."""
    import optuna

    from fastmlp.sweep import claims
    from fastmlp.sweep import worker as sweep_worker

    spec = spec_of("""
method: bayes
parameters:
  epochs: {value: 2}
  hidden_size: {values: [4, 8, 12]}
  activation: {values: [relu, tanh]}
""", name="stuck")
    monkeypatch.setattr(sweep_worker, "make_sampler", lambda spec: (
        optuna.samplers.PartialFixedSampler({"hidden_size": 12, "activation": "ReLU"},
                                            optuna.samplers.RandomSampler())))
    job = worker_job(tmp_path, spec, count=20)
    calls = []
    sweep_worker.run_optuna_worker(job, train=fake_train(calls))

    trained = sorted((c.hidden_size, c.activation) for c in calls)
    assert trained == sorted((h, a) for h in (4, 8, 12) for a in ("ReLU", "tanh"))
    study = open_study(tmp_path, "stuck")
    trials = study.get_trials(deepcopy=False)
    repeats = [t for t in trials if claims.REPEAT_OF in t.user_attrs]
    originals = [t for t in trials if claims.REPEAT_OF not in t.user_attrs]
    assert len(originals) == 6 and {t.state.name for t in originals} == {"COMPLETE"}
    assert len({t.user_attrs[claims.CONFIG_KEY] for t in originals}) == 6
    assert repeats, "the fixed sampler must have proposed its point again"
    first = next(t for t in originals if t.params == {"hidden_size": 12, "activation": "ReLU"})
    for repeat in repeats:  # answered from the stored result, not trained
        assert repeat.params == first.params
        assert repeat.user_attrs[claims.REPEAT_OF] == first.number
        assert repeat.value == first.value and repeat.state.name == "COMPLETE"
        assert repeat.user_attrs["test_accuracy"] == first.user_attrs["test_accuracy"]
    # repeats come at most REPEATS_BEFORE_STEERING in a row before an untried point
    assert len(repeats) <= claims.REPEATS_BEFORE_STEERING * len(originals)
    assert sweep_worker.space_used_up(spec, job, trials)


def test_seeds_train_one_after_the_other_and_the_objective_is_their_mean(tmp_path):
    from fastmlp.sweep import worker as sweep_worker

    spec = spec_of("method: random\nparameters: {epochs: {value: 3}, "
                   "hidden_size: {values: [4]}}", name="seeds")
    job = worker_job(tmp_path, spec, count=1, seeds=3)
    calls = []
    sweep_worker.run_optuna_worker(job, train=fake_train(calls))
    assert [c.seed for c in calls] == [42, 43, 44]
    assert [Path(c.output_dir).name for c in calls] == ["seed-42", "seed-43", "seed-44"]
    trial, = open_study(tmp_path, "seeds").trials
    finals = [0.5 + 4 / 100 + s / 10000 for s in (42, 43, 44)]
    assert trial.value == pytest.approx(sum(finals) / 3)
    assert trial.user_attrs["seed_values"] == pytest.approx(finals)
    assert trial.user_attrs["value_std"] == pytest.approx(0.0001)
    assert trial.user_attrs["seeds"] == 3 and len(trial.user_attrs["run_dirs"]) == 3
    # the stored learning curve is the mean over the seeds, epoch by epoch
    assert trial.intermediate_values[3] == pytest.approx(trial.value)
    assert trial.intermediate_values[1] == pytest.approx(trial.value - 0.02)
    # a study is continued only with the --seeds it was made with
    with pytest.raises(FastMLPError, match=r"--seeds: sweep 'seeds' was run with --seeds 3"):
        create_or_load_study(job["storage"], spec, seeds=1)


def test_live_view_counts_and_table():
    from rich.console import Console

    from fastmlp.sweep.live import status_of, status_table

    import datetime
    now = datetime.datetime.now()

    def trial(number, state, value=None, **attrs):
        return SimpleNamespace(number=number, state=SimpleNamespace(name=state), value=value,
                               user_attrs=attrs, datetime_complete=now)
    trials = [trial(0, "COMPLETE", 0.8), trial(1, "COMPLETE", 0.85), trial(2, "PRUNED"),
              trial(3, "FAIL"), trial(4, "RUNNING"), trial(5, "COMPLETE", 0.85, repeat_of=1)]
    status = status_of(trials, total=10, goal="maximize",
                       started_at=now - datetime.timedelta(seconds=1), seconds=360.0)
    assert (status.complete, status.pruned, status.failed, status.running, status.repeats,
            status.done, status.best_number) == (2, 1, 1, 1, 1, 4, 1)
    assert status.trials_per_hour == pytest.approx(40.0)
    assert status.seconds_left == pytest.approx(6 * 90.0)
    console = Console(record=True, width=100, file=open(os.devnull, "w"))
    console.print(status_table(status, "s", "val_accuracy", ["trial 1 complete [worker 2]"]))
    text = console.export_text()
    for fragment in ("trials finished", "4 of 10", "repeats avoided", "0.8500 (trial 1)",
                     "trials per hour", "40", "time left", "9m00s", "trial 1 complete [worker 2]"):
        assert fragment in text


# =============================================================================== the PNG

EVERY_KIND = """
method: random
parameters:
  optimizer: {values: [sgd, momentum, nag, rmsprop, adam, nadam]}
  activation: {values: [identity, sigmoid, tanh, ReLU]}
  batch_size: {values: [16, 32, 64, 128, 256]}
  learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-1}
  epsilon: {distribution: log_uniform, min: -20, max: -10}
  momentum: {distribution: uniform, min: 0.5, max: 0.99}
  hidden_size: {distribution: int_uniform, min: 16, max: 1024}
  beta: {distribution: q_uniform, min: 0.5, max: 0.95, q: 0.05}
  weight_decay: {values: [0, 0.0005, 0.5]}
  weight_init: {values: [random, Xavier]}
  num_layers: {min: 1, max: 6}
  loss: {value: cross_entropy}
"""


def fake_trials(spec, n: int):
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    for i in range(n):
        trial = study.ask()
        for param in spec.searched:
            param.suggest(trial)
        study.tell(trial, 0.5 + 0.4 * ((i * 37) % n) / n)
    return study.trials


@pytest.mark.parametrize("kinds", [2, 11])
def test_parallel_coordinates_png_labels_never_overlap(tmp_path, kinds):
    import matplotlib.pyplot as plt

    from fastmlp.sweep.figures import parallel_coordinates_figure, visible_texts

    spec = spec_of(EVERY_KIND)
    spec = dataclasses.replace(spec, params=spec.params[:kinds] + spec.params[-1:])
    assert len(spec.searched) == kinds
    figure = parallel_coordinates_figure(spec, fake_trials(spec, 60))
    try:
        renderer = figure.canvas.get_renderer()
        texts = visible_texts(figure)
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        for i, (text_a, a) in enumerate(boxes):
            for text_b, b in boxes[i + 1:]:
                assert not a.overlaps(b), f"{text_a!r} overlaps {text_b!r}"
        shown = {t.get_text() for t in texts}
        # every axis keeps its name, and most of the values stay labelled
        assert {p.name for p in spec.searched} | {"val_accuracy"} <= shown
        if kinds == 11:
            assert {"sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "Xavier"} <= shown
        # the picture grows with the number of parameters
        width, _ = figure.get_size_inches()
        assert width >= 1.5 * (kinds + 1)
        figure.savefig(tmp_path / "p.png", dpi=110)
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        plt.close(figure)


# =============================================================================== a real sweep

@pytest.fixture(scope="module")
def finite_sweep(tmp_path_factory, fastmlp_env, fashion_dir):
    """`python cli.py sweep` (stdout a pipe) of a 4-point space asked for 10 trials, with 2
    workers and --seeds 2; run once for the tests below."""
    root = tmp_path_factory.mktemp("finite")
    spec_file = root / "finite.yaml"
    spec_file.write_text(FINITE)
    out = root / "out"
    env = dict(os.environ, WANDB_DIR=str(root), WANDB_MODE="offline")
    done = subprocess.run(
        [*sweep_program(), str(spec_file), "--count", "10", "--workers", "2", "--seeds", "2",
         "--output-dir", str(out), "--wandb-mode", "offline", "--data-dir", str(fashion_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return SimpleNamespace(root=root, out=out, stdout=done.stdout, stderr=done.stderr,
                           study=open_study(out, "finite"))


def test_finite_space_is_trained_once_per_point_then_the_sweep_ends(finite_sweep):
    from fastmlp.sweep.claims import REPEAT_OF

    study, stdout = finite_sweep.study, finite_sweep.stdout
    trained = [t for t in study.trials if REPEAT_OF not in t.user_attrs]
    repeats = [t for t in study.trials if REPEAT_OF in t.user_attrs]
    points = sorted((t.params["hidden_size"], t.params["activation"]) for t in trained)
    assert points == [(4, "ReLU"), (4, "tanh"), (8, "ReLU"), (8, "tanh")]
    assert {t.state.name for t in trained} == {"COMPLETE"}
    assert ("every one of the 4 configurations of the search space has been tried: the "
            "sweep ends with 4 trained trials, not --count 10") in stdout
    # each configuration's seeds trained once, on disk
    on_disk = sorted(p.parent for p in finite_sweep.out.glob("trials/*/seed-*/*/summary.json"))
    assert len(on_disk) == 8
    # one plain line per finished trial (stdout is not a terminal); no worker's epoch lines
    for trial in study.trials:
        assert sum(line.startswith(f"trial {trial.number} ") for line in
                   stdout.splitlines()) == 1, stdout
    assert "epoch 1/2" not in stdout
    # each seed's offline wandb run is in the sweep's group (wandb sync shows them together)
    runs = list(finite_sweep.root.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 8
    assert all(b"finite" in run.read_bytes() for run in runs)
    assert "epoch 1/2" in (finite_sweep.out / "workers" / "worker-1.log").read_text()
    for repeat in repeats:
        assert f"trial {repeat.number} repeat, not trained" in stdout
    assert f"{len(repeats)} repeat(s) avoided" in stdout
    # the trials table shows the repeats as such
    with open(finite_sweep.out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(study.trials)
    assert sorted(r["number"] for r in rows if r["repeat_of"]) == sorted(
        str(t.number) for t in repeats)


def test_seeds_give_mean_and_spread(finite_sweep):
    from statistics import mean, stdev

    for trial in finite_sweep.study.trials:
        if "repeat_of" in trial.user_attrs:
            continue
        summaries = [json.loads((Path(d) / "summary.json").read_text())
                     for d in trial.user_attrs["run_dirs"]]
        assert [s["config"]["seed"] for s in summaries] == [42, 43]
        finals = [s["epochs"][-1]["val_accuracy"] for s in summaries]
        assert trial.value == pytest.approx(mean(finals))
        assert trial.user_attrs["value_std"] == pytest.approx(stdev(finals))
        assert trial.user_attrs["test_accuracy"] == pytest.approx(
            mean(s["test_accuracy"] for s in summaries))
    best = max((t for t in finite_sweep.study.trials if "repeat_of" not in t.user_attrs),
               key=lambda t: t.value)
    assert (f"best: trial {best.number}, val_accuracy = {best.value:.4f} ± "
            f"{best.user_attrs['value_std']:.4f} (mean ± std of 2 seeds)") in finite_sweep.stdout
    assert "val_accuracy (mean ± std, 2 seeds)" in (finite_sweep.out / "report.txt").read_text()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--enable-unsafe-swiftshader", "--window-size=1400,3200"]


@pytest.fixture
def chromium(tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -e '.[dev]')")
    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        skip_or_fail("chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"]:
        options.add_argument(flag)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def test_report_html_opens_offline_in_chromium(finite_sweep, chromium, tmp_path):
    page = finite_sweep.out / "report.html"
    text = page.read_text()
    assert not re.search(r"<(script|link)[^>]*(src|href)=", text)  # nothing to fetch
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js is inline
    # a copy far from the sweep (as mailed to a colleague) still opens
    copy = tmp_path / "copy.html"
    shutil.copy(page, copy)
    chromium.get(copy.as_uri())
    plots = chromium.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot')].map("
        "  gd => gd.data.map(t => [t.type, t.type === 'parcoords' ? "
        "    t.dimensions.map(d => [d.label, d.values.length]) : null]))")
    errors = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    completed = [t for t in finite_sweep.study.trials
                 if t.state.name == "COMPLETE" and "repeat_of" not in t.user_attrs]
    parcoords = [trace for figure in plots for trace in figure if trace[0] == "parcoords"]
    assert len(parcoords) == 1
    dimensions = parcoords[0][1]
    assert [label for label, _ in dimensions] == ["hidden_size", "activation", "val_accuracy"]
    assert {count for _, count in dimensions} == {len(completed)}  # one line per trial
    drawn = chromium.execute_script(  # plotly drew the axes of the parallel coordinates
        "return document.querySelectorAll('.parcoords .y-axis').length")
    assert drawn == 3
    kinds = {trace[0] for figure in plots for trace in figure}
    assert {"parcoords", "bar", "scatter"} <= kinds  # importance/correlation, history, curves
    body = chromium.find_element("tag name", "body").text
    for fragment in ("Parameter importance", "Spearman correlation", "Best value over time",
                     "Learning curves", "Best trials", "fastmlp train -wp"):
        assert fragment in body
    chromium.save_screenshot(str(finite_sweep.out / "report-screenshot.png"))


def test_sweep_plots_have_a_white_background(tmp_path):
    """Both PNGs paste into a white report page: white is their commonest colour (Optuna's
    importance plot sets matplotlib's grey ggplot style, which must not reach either)."""
    import numpy as np
    from matplotlib.image import imread

    from fastmlp.sweep.report import write_plots

    spec = spec_of(EVERY_KIND)
    written = write_plots(fake_trials(spec, 20), spec, tmp_path)
    assert [path.name for path, _ in written] == ["param_importances.png",
                                                 "parallel_coordinate.png"]
    for path, note in written:
        assert note is None
        pixels = imread(path)[..., :3].reshape(-1, 3)
        colours, counts = np.unique(pixels, axis=0, return_counts=True)
        assert tuple(colours[counts.argmax()]) == (1.0, 1.0, 1.0), path.name
