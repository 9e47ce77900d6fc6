"""The list of papers (every folder under papers/ with a paper.yaml), for the Makefile and the CI scripts."""

from __future__ import annotations

import sys
from pathlib import Path

PAPERS_DIR = Path(__file__).resolve().parents[1] / "papers"


def paper_names(papers_dir: Path = PAPERS_DIR) -> list[str]:
    return sorted(p.parent.name for p in papers_dir.glob("*/paper.yaml"))


def require_paper(name: str, papers_dir: Path = PAPERS_DIR) -> None:
    """Exit with the list of papers when ``name`` is not one of them."""
    names = paper_names(papers_dir)
    if name not in names:
        sys.exit(f"unknown paper {name!r}. Papers: {', '.join(names)}\nUsage: make reproduce PAPER=<name> [CONFIG=small]")


if __name__ == "__main__":
    if len(sys.argv) == 2:
        require_paper(sys.argv[1])
    else:
        print(" ".join(paper_names()))
