"""The README's examples run as written: the Python block of "Use it from Python" and the
shell block of "Your own data", each in an empty directory."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("fastmlp_env")


def code_block(section: str, language: str) -> str:
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", body, re.S)
    assert len(blocks) == 1, f"README section {section!r}: expected one {language} block"
    return blocks[0]


def _env():
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
                PYTHONPATH=str(README.parent))


def test_use_it_from_python(tmp_path):
    done = subprocess.run([sys.executable, "-c", code_block("Use it from Python", "python")],
                          cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(re.search(r"^accuracy ([0-9.]+)", done.stdout, re.M).group(1))
    assert accuracy > 0.9
    assert (tmp_path / "digits.onnx").stat().st_size > 0
    # MLPRegressor in a Pipeline on a table of text columns and missing cells
    assert float(re.search(r"^R\^2 ([0-9.]+)", done.stdout, re.M).group(1)) > 0.7


def test_your_own_data(tmp_path):
    script = code_block("Your own data", "bash")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test accuracy" in done.stdout and "iris.csv[0]" in done.stdout
    assert "penguins.csv[0]\tAdelie\t" in done.stdout  # a table of text and missing cells
    assert "test rmse" in done.stdout
    predictions = (tmp_path / "predictions.tsv").read_text().splitlines()
    assert len(predictions) == 442 and predictions[0].startswith("diabetes.csv[0]\ttarget\t")
    assert "task: regression" in done.stderr
    assert (tmp_path / "iris.onnx").stat().st_size > 0
    assert "ran 4 trial(s)" in done.stdout
    assert "--data iris.csv --label-column species" in (
        tmp_path / "sweeps-out" / "iris" / "best_command.txt").read_text()
