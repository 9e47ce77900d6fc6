"""Evaluate a trained run on its validation and test patients (real data only, no diffusion):
``python -m papers.meddiffusion.evaluate --config FILE --out TRAIN_RUN_DIR [key=value ...]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import (
    build_model,
    evaluate_predictions,
    load_cohort,
    prepare,
    split_predictions,
)
from shared.runs import entrypoint, load_checkpoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    state = load_checkpoint(Path(args.out) / "best_model.pt")
    prepared = prepare(cfg, load_cohort(cfg))
    model = build_model(cfg, prepared.vocab_size)
    model.load_state_dict(state["model"])
    metrics = evaluate_predictions(split_predictions(model, prepared))
    Path(args.out, "eval.json").write_text(json.dumps(metrics, indent=2))
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
