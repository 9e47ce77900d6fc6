"""Evaluate a trained run (or the untouched base model, method=zero_shot) on the task's validation / test rows.

    python -m papers.adalink.evaluate --config papers/adalink/configs/small.yaml --out TRAIN_RUN_DIR [method=...]

Rebuilds the model from what train.py saved (the adapter alone on a fresh base), writes ``<out>/eval.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from papers.adalink.config import Config
from papers.adalink.data import label_token_ids, prepare
from papers.adalink.methods import load_trained
from papers.adalink.models import load_base_model
from papers.adalink.train import evaluate_split
from shared.accel import seed_everything, set_torch_threads, setup_training
from shared.runs import entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=1)
    device = ctx.device
    out = Path(args.out)
    base, tokenizer = load_base_model(cfg.model, cfg.dtype, seed=cfg.seed)
    if cfg.method == "zero_shot":
        model = base
    else:
        saved = out / ("model" if cfg.method == "full_ft" else "adapter")
        if not saved.is_dir():
            raise FileNotFoundError(f"{saved} not found: train first (python -m papers.adalink.train ... --out {out}); "
                                    "full FT saves its model only with save_full_model=true")
        model = load_trained(cfg.method, base, saved)
    model.to(device).eval()
    spec, splits = prepare(cfg.task, tokenizer, cfg.split_sizes(cfg.eval_splits), cfg.max_field_tokens, cfg.data_seed,
                           cfg.data_dir)
    label_ids = torch.tensor(label_token_ids(tokenizer, spec), device=device)
    metrics: dict[str, float] = {}
    predictions = {}
    for split in cfg.eval_splits:
        result = evaluate_split(model, splits[split], label_ids, cfg.eval_batch_size, device, ctx.autocast)
        predictions[split] = result.pop("correct")
        metrics.update({f"{split}_{k}": v for k, v in result.items()})
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(metrics, indent=2))
    (out / "eval_predictions.json").write_text(json.dumps(predictions))
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
