"""The claims over several reproduce runs that differ only in their seed:
``python -m papers.deediff.seeds RUN_DIR RUN_DIR ... --out FILE.md``.

Each run's seed sets the DeeDiff fine-tuning (data order, fresh UEMs) and the sampling noise; the baseline is the
same cached one. For every key row (the baseline and the DeeDiff model at full depth, each early exit) the table
gives each seed's FID, the mean and its standard error over seeds; for every claim (an exit against full depth,
against static truncation at the depths just below and above its compute, against its per-timestep schedule and
against the baseline sampled with fewer steps at about the same FLOPs)
each seed's paired FID gap with its 95% interval. A claim is called only when every seed's interval lies on the
same side of zero ("no gap" when every interval holds zero, "mixed" otherwise), and only on seeds whose quality
gates pass (``report.quality_gate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from papers.deediff.report import comparison_kind, quality_gate, verdict
from shared.runs import UserError, entrypoint


def load_run(folder: Path) -> dict[str, Any]:
    """A reproduce run's eval.json, with the seed and the claims the gates allow."""
    path, config = folder / "eval.json", folder / "config.yaml"
    if not path.exists() or not config.exists():
        raise UserError(f"{folder} is not a finished DeeDiff reproduce run (no eval.json or config.yaml)")
    import yaml

    result = json.loads(path.read_text())
    result["seed"] = yaml.safe_load(config.read_text())["seed"]
    result["gate"] = quality_gate(result) or quality_gate(result, model="deediff full")
    return result


def overall(verdicts: list[str]) -> str:
    """One call for all seeds: their common verdict, else "mixed"."""
    return verdicts[0] if len(set(verdicts)) == 1 else "mixed"


def mean_se(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.2f} +- {se:.2f}"


def claim_pairs(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(row, what it is compared with) -> the paired gap, keyed by ``report.comparison_kind`` since the bracketing
    static depths may differ between seeds. Where both bracketing depths lie on one side of the row's FLOPs, the
    one nearer to them is kept."""
    rows = {r["config"]: r for r in run["rows"]}
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for comp in run.get("comparisons", []):
        row, ref = rows[comp["a"]], rows[comp["b"]]
        key = (comp["a"], comparison_kind(row, ref))
        if key in pairs and key[1].startswith("static ") and (
                abs(rows[pairs[key]["b"]]["flops_fraction"] - row["flops_fraction"])
                <= abs(ref["flops_fraction"] - row["flops_fraction"])):
            continue
        pairs[key] = comp
    return pairs


def rows_table(runs: list[dict[str, Any]]) -> str:
    names = [r["config"] for r in runs[0]["rows"] if not r["config"].startswith(("deediff static", "deediff schedule"))]
    head = ("| row | layers executed (mean) | " + " | ".join(f"FID seed {r['seed']}" for r in runs)
            + " | FID mean +- SE | class acc mean +- SE |\n|---|---|" + "---|" * (len(runs) + 2) + "\n")
    lines = []
    for name in names:
        rows = [next((x for x in r["rows"] if x["config"] == name), None) for r in runs]
        if any(x is None for x in rows):
            continue
        fids = [x["fid"] for x in rows]
        lines.append(f"| {name} | {np.mean([x['layer_fraction'] for x in rows]):.1%} | "
                     + " | ".join(f"{f:.2f}" for f in fids)
                     + f" | {mean_se(fids)} | {mean_se([x['class_accuracy'] for x in rows])} |")
    return head + "\n".join(lines) + "\n"


def claims_table(runs: list[dict[str, Any]]) -> str:
    gated = [r for r in runs if r["gate"] is None]
    out = []
    for r in runs:
        if r["gate"] is not None:
            out.append(f"Seed {r['seed']} is left out of the claims: {r['gate']}.")
    if not gated:
        return "\n".join(out) + "\n\nNo seed passes the quality gates: every claim is withheld.\n"
    keys = [k for k in claim_pairs(gated[0]) if all(k in claim_pairs(r) for r in gated)]
    what = {"baseline full": "vs the baseline (full depth)", "deediff full": "vs full depth",
            "static less": "vs static truncation at less compute", "static more": "vs static truncation at more compute",
            "schedule": "vs per-timestep schedule, matched compute",
            "baseline fewer steps": "vs the baseline with fewer sampling steps, about the same FLOPs"}
    lines = ["| row | compared with | " + " | ".join(f"gap seed {r['seed']} [95% CI]" for r in gated)
             + " | mean gap +- SE | call |", "|---|---|" + "---|" * (len(gated) + 2)]
    for key in keys:
        comps = [claim_pairs(r)[key] for r in gated]
        calls = [verdict(c["ci_low"], c["ci_high"]) for c in comps]
        lines.append(f"| {key[0]} | {what.get(key[1], key[1])} | "
                     + " | ".join(f"{c['gap']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]" for c in comps)
                     + f" | {mean_se([c['gap'] for c in comps])} | {overall(calls)} |")
    return ("\n".join(out) + "\n\n" if out else "") + "\n".join(lines) + "\n"


def report(folders: list[Path]) -> str:
    runs = [load_run(f) for f in folders]
    if len({r["seed"] for r in runs}) != len(runs):
        raise UserError(f"the runs share seeds ({[r['seed'] for r in runs]}): give one run per seed")
    return (f"# DeeDiff over {len(runs)} seeds\n\nRuns: {', '.join(f'`{f}`' for f in folders)}. FID with "
            f"{runs[0]['feature_net']}, {runs[0]['eval_samples']} samples per row; gaps are FID(row) - FID(compared "
            "with), paired by initial noise, with 95% normal bootstrap intervals.\n\n## Rows\n\n" + rows_table(runs)
            + "\n## Claims (a call needs every seed's interval on the same side of zero)\n\n" + claims_table(runs))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="reproduce run folders, one per seed")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args(argv)
    text = report(args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
