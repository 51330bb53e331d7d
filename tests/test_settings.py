"""The settings table (fastmlp/config.py) is the one declaration of every `train` setting:
the README's flag table, `fastmlp train --help`, validation and resume all follow it."""
from __future__ import annotations

from pathlib import Path

import pytest

from clirunner import invoke
from fastmlp.config import (FIXED, MAY_CHANGE, SETTINGS, SWEEPABLE, TrainConfig, resume_config,
                            settings_table_markdown)
from fastmlp.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_readme_flag_table_is_the_settings_table():
    assert settings_table_markdown() in README.read_text(), (
        "README.md's flag table differs from the settings table; paste the output of "
        "fastmlp.config.settings_table_markdown() into it")


def test_train_help_shows_every_setting_as_the_table_declares_it():
    outcome = invoke("train", "--help")
    assert outcome.code == 0, outcome.err
    text = squeeze(outcome.out)
    for entry in SETTINGS:
        flags = f"{entry.short}, {entry.long}" if entry.short else entry.long
        assert flags in text, f"{entry.name}: {flags} missing from train --help"
        assert squeeze(entry.help) in text, f"{entry.name}: its help text is missing"
        if entry.choices:
            assert "[" + "|".join(entry.choices) + "]" in text
        if entry.kind is bool:  # a --flag/--no-flag pair
            assert f"{entry.long} / --no-{entry.long[2:]}" in text
        elif entry.default is not None:
            assert f"[default: {entry.default}]" in text


# A value each rule refuses; a rule added to the table without a case here fails the test.
REFUSED = {"epochs": 0, "batch_size": 0, "learning_rate": 0.0, "momentum": 1.0, "beta": -0.1,
           "beta1": 1.0, "beta2": 1.5, "epsilon": float("inf"), "weight_decay": -1e-3,
           "num_layers": -1, "test_fraction": 1.0, "hidden_size": 0, "seed": 2**32, "val_fraction": 0.0,
           "threads": 0, "dropout": 1.0, "input_dropout": -0.5, "augment": "shift:-1",
           "warmup_epochs": -1.0, "label_smoothing": 2.0, "patience": -1, "huber_delta": 0.0,
           "target": ("price", " "), "delimiter": ";;", "categorical": (), "drop": ("",),
           "leaky_slope": -1.0, "rotate": 180.5, "scale": 1.0, "shear": 90.0, "elastic": -1.0,
           "elastic_sigma": 0.0, "temperature": 0.0, "distill_weight": 1.5, "ensemble": 0}


def test_every_rule_refuses_with_one_line_naming_the_flag():
    ruled = {entry.name for entry in SETTINGS if entry.rule is not None}
    assert ruled == set(REFUSED)
    for entry in SETTINGS:
        if entry.name in REFUSED:
            with pytest.raises(ConfigError, match=f"^{entry.flag}: "):
                TrainConfig(**{entry.name: REFUSED[entry.name]}).validated()
        if entry.choices:
            with pytest.raises(ConfigError, match=f"^{entry.flag}: 'nonsense' is not one of"):
                TrainConfig(**{entry.name: "nonsense"}).validated()


# Another valid value of the settings with a rule that a generic guess cannot satisfy.
OTHER_VALID = {"augment": "shift:1,flip", "warmup_epochs": 1.0, "task": "regression",
               "target": ("price",), "delimiter": ";", "categorical": ("zip",),
               "drop": ("id",)}


def another_valid_value(entry):
    """A valid value of the setting other than its default."""
    if entry.name in OTHER_VALID:
        return OTHER_VALID[entry.name]
    if entry.kind is bool:
        return not entry.default
    if entry.choices:
        return next(name for name in entry.choices if name != entry.default)
    if entry.default is None:
        return 1 if entry.kind is int else "/elsewhere"
    if entry.kind is str:
        return entry.default + "-2"
    if entry.kind is int:
        return entry.default + 1
    return entry.default / 2 if entry.default else 0.1


def test_resume_refuses_every_fixed_setting_and_takes_every_machine_local_one():
    saved = TrainConfig().validated()
    for entry in SETTINGS:
        value = another_valid_value(entry)
        if entry.resume == FIXED:
            with pytest.raises(ConfigError, match=f"^{entry.flag}: --resume continues"):
                resume_config(saved, {entry.name: value})
        elif entry.resume == MAY_CHANGE:
            assert getattr(resume_config(saved, {entry.name: value}), entry.name) == value
        else:
            assert resume_config(saved, {entry.name: value}) == saved


def test_sweeps_vary_only_settings_that_a_resumed_run_keeps():
    assert set(SWEEPABLE) <= {entry.name for entry in SETTINGS if entry.resume == FIXED}
