"""Evaluate a trained run: ``python -m papers.__NAME__.evaluate --config FILE --out TRAIN_RUN_DIR``."""

from __future__ import annotations

import json

import torch

from papers.__NAME__.config import Config
from papers.__NAME__.model import accuracy, make_model
from shared.data import load
from shared.runs import UserError, entrypoint, latest_checkpoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    state = latest_checkpoint(args.out)
    if state is None:
        raise UserError(f"{args.out} holds no trained checkpoint; run papers.__NAME__.train with this --out first")
    data = load("toy2d", name="ring8", n=cfg.eval_points, seed=cfg.seed + 1)  # held-out draw
    model = make_model(cfg.hidden, int(data["components"].max()) + 1)
    model.load_state_dict(state["model"])
    metrics = {"accuracy": accuracy(model, torch.from_numpy(data["points"]), torch.from_numpy(data["components"]))}
    with open(f"{args.out}/eval.json", "w") as fh:
        json.dump(metrics, fh, indent=2)
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
