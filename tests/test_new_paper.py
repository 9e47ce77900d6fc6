"""`make new-paper` output is a complete paper that passes its own tests as generated."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("new_paper", ROOT / "ci" / "new_paper.py")
new_paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(new_paper)
create = new_paper.create


def test_generated_paper_passes_its_tests(tmp_path: Path) -> None:
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "__init__.py").write_text("")
    dest = create("demo_paper", papers)
    leftovers = [p for p in dest.rglob("*") if p.is_file() and "__NAME__" in p.read_text(errors="ignore")]
    assert not leftovers
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(dest), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lower-case Python identifier"):
        create("My-Paper", tmp_path)
    create("ok_name", tmp_path)
    with pytest.raises(FileExistsError):
        create("ok_name", tmp_path)
