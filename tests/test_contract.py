"""Every folder under papers/ keeps the paper contract (papers/README.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

PAPERS = Path(__file__).resolve().parents[1] / "papers"
NAMES = sorted(p.name for p in PAPERS.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
REQUIRED_FILES = [
    "__init__.py", "README.md", "paper.yaml", "configs/smoke.yaml", "configs/small.yaml", "configs/paper.yaml",
    "train.py", "evaluate.py", "reproduce.py", "bench.py", "tests/__init__.py", "tests/test_smoke.py",
]
PAPER_KEYS = {"title", "arxiv", "official_code", "framework", "status", "entry_points", "headline"}
STATUSES = {"reproduced", "partially-reproduced", "not-reproduced", "implemented", "in-progress", "archived"}


def test_there_are_papers() -> None:
    assert NAMES, "no paper folders found"


@pytest.mark.parametrize("name", NAMES)
def test_required_files(name: str) -> None:
    missing = [f for f in REQUIRED_FILES if not (PAPERS / name / f).is_file()]
    assert not missing, f"papers/{name} lacks {missing}"
    assert (PAPERS / name / "results").is_dir(), f"papers/{name} lacks results/"
    assert name.isidentifier() and name.islower()


@pytest.mark.parametrize("name", NAMES)
def test_paper_yaml(name: str) -> None:
    meta = yaml.safe_load((PAPERS / name / "paper.yaml").read_text())
    assert PAPER_KEYS <= set(meta), f"paper.yaml lacks {PAPER_KEYS - set(meta)}"
    assert meta["framework"] in {"torch", "jax"}
    assert meta["status"] in STATUSES
    for entry in meta["entry_points"]:
        assert (PAPERS / name / f"{entry}.py").is_file(), f"entry point {entry} has no {entry}.py"


@pytest.mark.parametrize("name", NAMES)
def test_entry_points_define_main(name: str) -> None:
    for entry in ("train", "evaluate", "reproduce", "bench"):
        tree = ast.parse((PAPERS / name / f"{entry}.py").read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "main" in functions, f"papers/{name}/{entry}.py has no main(argv)"
        assert "__main__" in ast.unparse(tree), f"papers/{name}/{entry}.py cannot run as python -m"


@pytest.mark.parametrize("name", NAMES)
def test_smoke_test_uses_smoke_config(name: str) -> None:
    text = (PAPERS / name / "tests" / "test_smoke.py").read_text()
    assert "pytest.mark.smoke" in text and "smoke.yaml" in text


@pytest.mark.parametrize("name", NAMES)
def test_readme_sections(name: str) -> None:
    text = (PAPERS / name / "README.md").read_text().lower()
    for word in ("arxiv", "make reproduce paper=" + name, "results"):
        assert word in text, f"papers/{name}/README.md never mentions {word!r}"


@pytest.mark.parametrize("name", NAMES)
def test_configs_are_mappings(name: str) -> None:
    for config in ("smoke", "small", "paper"):
        assert isinstance(yaml.safe_load((PAPERS / name / "configs" / f"{config}.yaml").read_text()), dict)
