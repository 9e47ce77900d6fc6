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
from papers.deediff.report import claims_section, markdown, plot_all, summary, uem_comparison
from papers.deediff.train import train
from shared.runs import entrypoint, load_config, parse_run_args


def timestep_aware_variant(cfg: Config, out: Path) -> dict[str, Any]:
    """Fine-tune DeeDiff with the timestep-aware UEM from the run's baseline.pt and sweep it (out/timestep_aware)."""
    weights = cfg.weights_path(out)
    variant = dataclasses.replace(cfg, uem_timestep_aware=True, baseline_steps=0, compare_timestep_aware_uem=False,
                                  finetune_from=str(weights / "baseline.pt"), weights_dir=str(weights / "timestep_aware"))
    tick = time.perf_counter()
    train(variant, out / "timestep_aware")
    train_seconds = time.perf_counter() - tick
    result = evaluate(variant, out / "timestep_aware", baseline_row=False)
    return {"eval": result, "train_minutes": train_seconds / 60,
            "sweep_minutes": (time.perf_counter() - tick - train_seconds) / 60, **summary(result)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    out = Path(args.out)
    tick = time.perf_counter()
    train_metrics = train(cfg, out)
    train_seconds = time.perf_counter() - tick
    result = evaluate(cfg, out)
    eval_seconds = time.perf_counter() - tick - train_seconds
    with np.load(out / "samples.npz") as npz:
        samples = {k: npz[k] for k in npz.files}
    plots = plot_all(result, samples, out)
    text = markdown(result, f"DeeDiff reproduction: {Path(args.config).name} on {cfg.dataset}")
    text += (f"\nWall time: training {train_seconds / 60:.1f} min (this call; baseline "
             f"{train_metrics['baseline_seconds'] / 60:.1f} min + DeeDiff fine-tuning "
             f"{train_metrics['finetune_seconds'] / 60:.1f} min in total), sweep {eval_seconds / 60:.1f} min.\n")
    metrics = {**summary(result), "train_minutes": train_seconds / 60, "sweep_minutes": eval_seconds / 60}
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
