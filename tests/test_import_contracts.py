"""The import-linter contracts hold for the repo, and fail on a deliberate cross-import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    config = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "gen_importlinter.py"), "--root", str(root)], capture_output=True, text=True, check=True
    ).stdout
    (root / "importlinter.ini").write_text(config)
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "importlinter.ini", "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


def _package(root: Path, dotted: str, body: str = "") -> None:
    path = root.joinpath(*dotted.split("."))
    path.mkdir(parents=True, exist_ok=True)
    (path / "__init__.py").write_text(body)


def _tree(root: Path, alpha_body: str = "", shared_body: str = "") -> Path:
    _package(root, "shared", shared_body)
    _package(root, "papers")
    _package(root, "papers.alpha", alpha_body)
    _package(root, "papers.beta", "import shared\n")
    return root


def test_clean_tree_passes(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cross_paper_import_fails(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path, alpha_body="import papers.beta\n"))
    assert result.returncode != 0
    assert "papers.alpha" in result.stdout and "papers.beta" in result.stdout


def test_shared_importing_a_paper_fails(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path, shared_body="import papers.alpha\n"))
    assert result.returncode != 0
    assert "shared never imports papers" in result.stdout


def test_generated_contracts_list_every_paper() -> None:
    config = subprocess.run([sys.executable, str(ROOT / "ci" / "gen_importlinter.py")], capture_output=True, text=True, check=True).stdout
    papers = [p.name for p in (ROOT / "papers").iterdir() if (p / "__init__.py").exists()]
    for name in papers:
        assert f"papers.{name}" in config or len(papers) < 2
