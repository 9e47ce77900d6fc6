"""Create papers/<name>/ from ci/paper_template: ``python ci/new_paper.py NAME`` (``make new-paper NAME=...``)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "ci" / "paper_template"


def create(name: str, papers_dir: Path = ROOT / "papers") -> Path:
    if not name.isidentifier() or not name.islower():
        raise ValueError(f"paper name {name!r} must be a lower-case Python identifier, e.g. my_paper")
    dest = papers_dir / name
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in dest.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".md", ".yaml"}:
            path.write_text(path.read_text().replace("__NAME__", name))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    try:
        dest = create(parser.parse_args().name)
    except (ValueError, FileExistsError) as err:
        sys.exit(str(err))
    print(f"created {dest.relative_to(ROOT)}; next: edit its README and paper.yaml, then `make test`")


if __name__ == "__main__":
    main()
