"""Write the import-linter contracts for the papers that exist now, so a new folder is covered automatically.

    python ci/gen_importlinter.py [--root DIR] > .importlinter && lint-imports --config .importlinter
"""

from __future__ import annotations

import argparse
from pathlib import Path


def contracts(papers: list[str]) -> str:
    lines = ["[importlinter]", "root_packages =", "    shared", "    papers", ""]
    lines += [
        "[importlinter:contract:shared-never-imports-papers]",
        "name = shared never imports papers",
        "type = forbidden",
        "source_modules =",
        "    shared",
        "forbidden_modules =",
        "    papers",
        "",
    ]
    if len(papers) >= 2:
        lines += ["[importlinter:contract:papers-are-independent]", "name = no paper imports another paper",
                  "type = independence", "modules ="]
        lines += [f"    papers.{p}" for p in papers] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository root")
    args = parser.parse_args()
    papers = sorted(p.name for p in (args.root / "papers").iterdir() if (p / "__init__.py").exists())
    print(contracts(papers))


if __name__ == "__main__":
    main()
