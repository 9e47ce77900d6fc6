"""Publish a finished reproduction into the committed results: ``python ci/publish_results.py PAPER CONFIG``.

    make reproduce PAPER=owl CONFIG=small          # -> build/reproduce/owl/small/
    make publish-results PAPER=owl CONFIG=small    # -> papers/owl/results/small/ (+ PUBLISHED.json)

Refuses a dirty working tree and a run whose run_info.json says it ran from a dirty tree (in its first call or in
any later call that resumed it), so every published number names the commits that produced it. Checkpoints, TensorBoard logs and model weights stay behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from paper_list import require_paper

ROOT = Path(__file__).resolve().parents[1]
LEFT_BEHIND = ("checkpoints", "tensorboard", "model", "*.pt", "*.pkl", "*.safetensors", "*.replaced-*")  # *.pkl: resume state


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def publish(paper: str, config: str, source: Path | None = None) -> Path:
    """Copy the run folder of ``paper``/``config`` into papers/<paper>/results/<config>/ and record provenance."""
    source = source or ROOT / "build" / "reproduce" / paper / config
    info_path = source / "run_info.json"
    if not info_path.is_file():
        raise SystemExit(f"no finished run at {source} (no run_info.json); run `make reproduce PAPER={paper} CONFIG={config}`")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise SystemExit("the working tree has uncommitted changes: commit them, rerun the reproduction, then publish")
    info = json.loads(info_path.read_text())
    attempts = [info, *info.get("attempts", [])]  # a resumed or re-swept run records every call that wrote into it
    if any(a.get("dirty") is not False for a in attempts):
        raise SystemExit(f"{source} was produced from a dirty tree (or outside git), in its first call or a later "
                         "one: rerun it from a clean commit")
    if not (source / "metrics.json").is_file() and not (source / "results.md").is_file():
        raise SystemExit(f"{source} has no metrics.json or results.md: the reproduction did not finish")
    dest = ROOT / "papers" / paper / "results" / config
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    record = {"run_commit": info.get("commit"), "run_commits": list(dict.fromkeys(a.get("commit") for a in attempts)),
              "published_at_commit": _git("rev-parse", "HEAD"),
              "published": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": str(source.relative_to(ROOT))
              if source.is_relative_to(ROOT) else str(source)}
    (dest / "PUBLISHED.json").write_text(json.dumps(record, indent=2) + "\n")
    return dest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paper")
    parser.add_argument("config")
    parser.add_argument("--from", dest="source", type=Path, help="run folder (default build/reproduce/PAPER/CONFIG)")
    args = parser.parse_args(argv)
    require_paper(args.paper)
    dest = publish(args.paper, args.config, args.source)
    print(f"published {dest.relative_to(ROOT)}; review `git diff --stat`, then commit it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
