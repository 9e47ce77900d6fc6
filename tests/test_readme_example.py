"""The README's "Using shared/ in your own code" example runs as written and learns."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Using shared/ in your own code", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_learns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "example.py"
    script.write_text(_example())
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    metrics = json.loads((tmp_path / "runs" / "logistic" / "metrics.json").read_text())
    assert metrics["test_roc_auc"] > 0.95
    steps = [json.loads(line)["step"] for line in (tmp_path / "runs/logistic/metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(40))
    runpy.run_path(str(script), run_name="__main__")  # the same config again: resumes at step 40, adds nothing
    assert len((tmp_path / "runs/logistic/metrics.jsonl").read_text().splitlines()) == 40
