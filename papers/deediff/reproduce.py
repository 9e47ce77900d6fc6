"""Train the baseline and DeeDiff, run the sweep, write results.md / results.json / plots:
``python -m papers.deediff.reproduce --config FILE --out DIR``."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from papers.deediff.config import Config
from papers.deediff.evaluate import evaluate
from papers.deediff.report import (
    claims_section,
    finetune_section,
    markdown,
    plot_all,
    plot_finetune_validation,
    summary,
    uem_comparison,
)
from papers.deediff.search import file_sha256, searched_baseline
from papers.deediff.train import train
from shared.runs import entrypoint, load_config, parse_run_args


def timestep_aware_variant(cfg: Config, out: Path) -> dict[str, Any]:
    """Fine-tune DeeDiff with the timestep-aware UEM from the run's baseline and sweep it (out/timestep_aware)."""
    weights = cfg.weights_path(out)
    variant = dataclasses.replace(cfg, uem_timestep_aware=True, baseline_steps=0, compare_timestep_aware_uem=False,
                                  finetune_from=cfg.finetune_from or str(weights / "baseline.pt"), weights_dir=str(weights / "timestep_aware"))
    tick = time.perf_counter()
    train(variant, out / "timestep_aware")
    train_seconds = time.perf_counter() - tick
    result = evaluate(variant, out / "timestep_aware", baseline_row=False)
    return {"eval": result, "train_minutes": train_seconds / 60,
            "sweep_minutes": (time.perf_counter() - tick - train_seconds) / 60, **summary(result)}


def baseline_source(cfg: Config) -> str:
    """Where the fine-tuned baseline came from: its weights, their sha256 and, for a search's cached candidate,
    its steps and last scores (``candidate.json`` beside the weights)."""
    if not cfg.finetune_from:
        return ""
    record = Path(cfg.finetune_from).parent / "candidate.json"
    if not record.exists():
        return f"\nBaseline: `{cfg.finetune_from}` (sha256 {file_sha256(Path(cfg.finetune_from))}).\n"
    entry = json.loads(record.read_text())
    last = entry["curve"][-1]
    return (f"\nBaseline: search candidate `{entry['name']}` ({entry['parameters']:,} parameters), "
            f"{last['step']} steps ({last['cpu_seconds'] / 60:.0f} CPU-min); at its last evaluation class accuracy "
            f"{last['class_accuracy']:.3f}, FID {last['fid']:.1f}; weights `{entry['weights']}`, sha256 {entry['sha256']}.\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    out = Path(args.out)
    cfg = searched_baseline(cfg, Path(args.config).resolve().parent)  # the cached, checksummed baseline
    tick = time.perf_counter()
    train_metrics = train(cfg, out)
    train_seconds = time.perf_counter() - tick
    result = evaluate(cfg, out)
    eval_seconds = time.perf_counter() - tick - train_seconds
    with np.load(out / "samples.npz") as npz:
        samples = {k: npz[k] for k in npz.files}
    plots = plot_all(result, samples, out)
    plots += [p for p in [plot_finetune_validation({"DeeDiff": train_metrics}, out / "finetune_validation.png")] if p]
    text = markdown(result, f"DeeDiff reproduction: {Path(args.config).name} on {cfg.dataset}")
    text += (f"\nWall time: training {train_seconds / 60:.1f} min (this call; baseline "
             f"{train_metrics['baseline_seconds'] / 60:.1f} min + DeeDiff fine-tuning "
             f"{train_metrics['finetune_seconds'] / 60:.1f} min + fine-tuning validation "
             f"{train_metrics['validation_seconds'] / 60:.1f} min in total), sweep {eval_seconds / 60:.1f} min.\n")
    metrics = {**summary(result), "train_minutes": train_seconds / 60, "sweep_minutes": eval_seconds / 60}
    text += baseline_source(cfg)
    text += "\n" + finetune_section(train_metrics)
    claims, withheld = claims_section(result)  # the quality gate: no claims on a baseline that does not generate
    text += "\n" + claims
    if withheld:
        print(f"claims withheld: {withheld}")
    result["claims_withheld"] = withheld
    if cfg.compare_timestep_aware_uem:
        variant = timestep_aware_variant(cfg, out)
        metrics.update({f"timestep_aware.{k}": v for k, v in variant.items() if not isinstance(v, (dict, list))})
        text += (f"\n## UEM input: the official code's (patch tokens) vs the paper text's (tokens and t)\n\nBoth "
                 f"fine-tuned from the same baseline for {cfg.finetune_steps} steps; early exits of each beside static "
                 f"truncation of the same model at the closest average depth.\n\n"
                 + uem_comparison({"tokens (code)": result, "tokens + t (paper text)": variant["eval"]})
                 + f"\nWall time of the timestep-aware variant: fine-tuning {variant['train_minutes']:.1f} min, "
                 f"sweep {variant['sweep_minutes']:.1f} min.\n")
        result["timestep_aware"] = variant["eval"]
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"summary": metrics, "train": train_metrics,
                                                  "plots": [p.name for p in plots], **result}, indent=2))
    print(text)
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
