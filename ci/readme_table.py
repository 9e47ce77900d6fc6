"""Print the README's table of papers from each papers/<name>/paper.yaml and build/smoke_times.json."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def table() -> str:
    times_file = ROOT / "build" / "smoke_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    rows = ["| paper | arXiv | framework | status | smoke (s) | headline: ours vs the paper's |", "|---|---|---|---|---|---|"]
    for meta_file in sorted(ROOT.glob("papers/*/paper.yaml")):
        name = meta_file.parent.name
        meta = yaml.safe_load(meta_file.read_text())
        seconds = times.get(name, meta.get("smoke_seconds"))
        rows.append(
            f"| [{name}](papers/{name}/README.md) | {meta['arxiv']} | {meta['framework']} | {meta['status']} | "
            f"{seconds if seconds is not None else 'n/a'} | {meta['headline']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
