"""Bad input at the top: an unknown or missing PAPER fails at once, before any set-up, listing the papers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPERS = sorted(p.parent.name for p in (ROOT / "papers").glob("*/paper.yaml"))


@pytest.mark.parametrize("target", ["reproduce", "bench"])
def test_unknown_paper_lists_the_papers(target: str) -> None:
    result = subprocess.run(["make", "-s", target, "PAPER=no_such_paper"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown paper 'no_such_paper'" in result.stderr
    assert all(name in result.stderr for name in PAPERS)
    assert "pip install" not in result.stdout  # failed before set-up


def test_missing_paper_prints_usage() -> None:
    result = subprocess.run(["make", "-s", "reproduce"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "usage: make reproduce PAPER=<name>" in result.stdout
