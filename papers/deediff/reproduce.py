"""Train the baseline and DeeDiff, run the sweep, write results.md / results.json / plots:
``python -m papers.deediff.reproduce --config FILE --out DIR``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from papers.deediff.config import Config
from papers.deediff.evaluate import evaluate
from papers.deediff.report import markdown, plot_all, summary
from papers.deediff.train import train
from shared.runs import load_config, parse_run_args


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
    (out / "results.md").write_text(text)
    metrics = {**summary(result), "train_minutes": train_seconds / 60, "sweep_minutes": eval_seconds / 60}
    (out / "results.json").write_text(json.dumps({"summary": metrics, "train": train_metrics,
                                                  "plots": [p.name for p in plots], **result}, indent=2))
    print(text)
    return metrics


if __name__ == "__main__":
    main()
