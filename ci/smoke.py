"""Run every paper's smoke tests (its entry points on configs/smoke.yaml) and print seconds per paper.

    python ci/smoke.py            # every paper
    python ci/smoke.py owl sid    # some

Each paper runs in its own pytest process, so one paper's failure or import error cannot hide another's. A paper
without a smoke test counts as a failure. Writes build/smoke_times.json for the README's table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from paper_list import paper_names, require_paper

ROOT = Path(__file__).resolve().parents[1]
NO_TESTS_COLLECTED = 5


def run_paper(name: str) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "smoke", f"papers/{name}", "-q", "-p", "no:cacheprovider"], cwd=ROOT
    )
    seconds = time.perf_counter() - start
    if proc.returncode == NO_TESTS_COLLECTED:
        return "no smoke test", seconds
    return ("passed" if proc.returncode == 0 else "FAILED"), seconds


def main(argv: list[str]) -> int:
    names = argv or paper_names()
    for name in names:
        require_paper(name)
    results = {name: run_paper(name) for name in names}
    print("\n| paper | smoke | seconds |\n|---|---|---|")
    for name, (status, seconds) in results.items():
        print(f"| {name} | {status} | {seconds:.1f} |")
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "smoke_times.json").write_text(json.dumps({n: round(s, 1) for n, (_, s) in results.items()}, indent=1))
    failed = [n for n, (status, _) in results.items() if status != "passed"]
    n_ok = len(results) - len(failed)
    print(f"smoke: {n_ok} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
