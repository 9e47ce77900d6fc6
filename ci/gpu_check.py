"""Run every paper's `paper` config shape for a few steps on a CUDA machine and write build/gpu-check/report.md.

    python ci/gpu_check.py            # make gpu-check
    python ci/gpu_check.py --dry-run  # make gpu-check DRY_RUN=1: the plan, one line per paper, on any machine
    python ci/gpu_check.py --extra    # make gpu-check EXTRA=1: also each paper.yaml's longer `gpu_extra` job

Each paper's paper.yaml lists under ``gpu_check`` the overrides that shrink its paper config to a short run of the
real model shape (synthetic or cached data where the real data are absent). The report records, per paper,
steps/s, tokens/s or images/s, peak GPU memory and whether the loss fell.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml
from paper_list import paper_names

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "gpu-check"
THROUGHPUT_KEYS = ("tokens_per_s", "images_per_s", "samples_per_s")


def _meta() -> dict[str, dict]:
    """Each paper's paper.yaml, read once."""
    return {name: yaml.safe_load((ROOT / "papers" / name / "paper.yaml").read_text()) for name in paper_names()}


def plan(meta: dict[str, dict]) -> list[tuple[str, list[str] | None]]:
    """(paper, command) per paper; command None when the paper declares no gpu_check."""
    rows = []
    for name, fields in meta.items():
        overrides = fields.get("gpu_check")
        cmd = None if overrides is None else [
            sys.executable, "-m", f"papers.{name}.train", "--config", f"papers/{name}/configs/paper.yaml",
            "--out", str((OUT / name).relative_to(ROOT)), "--overwrite", *overrides]
        rows.append((name, cmd))
    return rows


def extra_jobs(meta: dict[str, dict]) -> list[tuple[str, str]]:
    """(paper, shell command) of the longer GPU jobs papers declare under ``gpu_extra`` (not in the 10-minute check)."""
    return [(name, fields["gpu_extra"]) for name, fields in meta.items() if fields.get("gpu_extra")]


def _machine() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return out.replace("\n", "; ")
    except (OSError, subprocess.CalledProcessError):
        return "unknown GPU"


def _row(name: str, metrics: dict, seconds: float, status: str) -> str:
    rate = next(((k, metrics[k]) for k in THROUGHPUT_KEYS if k in metrics), ("throughput", float("nan")))
    first, final = metrics.get("first_loss", float("nan")), metrics.get("final_loss", float("nan"))
    fell = "yes" if final < first else "no"
    mem = metrics.get("peak_gpu_memory_bytes", 0) / 2**30
    return (f"| {name} | {status} | {seconds:.0f} | {metrics.get('steps_per_s', float('nan')):.2f} | "
            f"{rate[1]:.0f} {rate[0].removesuffix('_per_s')}/s | {mem:.2f} | {first:.4g} -> {final:.4g} ({fell}) |")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--extra", action="store_true", help="also run the papers' gpu_extra jobs (hours)")
    parser.add_argument("--timeout", type=int, default=150, help="seconds per paper")
    args = parser.parse_args(argv)
    meta = _meta()
    rows = plan(meta)
    if args.dry_run:
        for name, cmd in rows:
            print(f"{name}: {shlex.join(cmd) if cmd else 'no gpu_check in paper.yaml'}")
        for name, cmd in extra_jobs(meta):
            print(f"{name} (EXTRA=1 only): {cmd}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu-check needs a CUDA device; `make gpu-check DRY_RUN=1` prints the plan", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [f"# GPU check: {_machine()}, {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
             f"Commit {subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}; "
             "`make gpu-check` (ci/gpu_check.py), each paper's configs/paper.yaml with its paper.yaml `gpu_check` overrides.",
             "", "| paper | status | wall s | steps/s | throughput | peak GPU GiB | loss first -> final (fell) |",
             "|---|---|---|---|---|---|---|"]
    failed = 0
    for name, cmd in rows:
        if cmd is None:
            lines.append(f"| {name} | no gpu_check | | | | | |")
            continue
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            (OUT / f"{name}.log").write_text(proc.stdout + proc.stderr)
        except subprocess.TimeoutExpired:
            status = f"timeout {args.timeout}s"
        seconds = time.perf_counter() - start
        metrics_file = OUT / name / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if status == "ok" and metrics_file.exists() else {}
        failed += status != "ok"
        lines.append(_row(name, metrics, seconds, status))
        print(lines[-1], flush=True)
    if args.extra:
        lines += ["", "## Longer jobs (gpu_extra)", ""]
        for name, cmd in extra_jobs(meta):
            proc = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, text=True)
            (OUT / f"{name}-extra.log").write_text(proc.stdout + proc.stderr)
            failed += proc.returncode != 0
            lines.append(f"- {name}: `{cmd}` exit {proc.returncode} (log build/gpu-check/{name}-extra.log)")
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
