"""Training patients/s with and without the diffusion augmentation (the overhead as a ratio) and inference
patients/s: ``python -m papers.meddiffusion.bench --config FILE --out DIR [key=value ...]``."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import torch

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import Prepared, build_model, load_cohort, make_optimizer, prepare
from papers.meddiffusion.models import meddiffusion_loss
from shared.accel import ThroughputMeter, count_parameters, seed_everything, set_torch_threads
from shared.runs import entrypoint, load_config, parse_run_args

TRAIN_BATCHES = 30
WARMUP = 3


def measure(cfg: Config, prepared: Prepared, batches: int = TRAIN_BATCHES) -> dict[str, float]:
    """Patients/s of training steps (all loss terms, backward, Adam) and of real-branch inference."""
    seed_everything(cfg.seed)
    model = build_model(cfg, prepared.vocab_size)
    opt = make_optimizer(cfg, model)
    data = prepared.data.take(prepared.splits.train)
    model.train()
    meter = ThroughputMeter(warmup=WARMUP)
    for i in range(batches + WARMUP):
        b = data.take(torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size) % len(data))
        parts = meddiffusion_loss(model(b.codes, b.days, b.lengths, synthesize=True), b.labels, cfg.lambda_s,
                                  cfg.lambda_d)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        meter.update(len(b))
    model.eval()
    infer = ThroughputMeter(warmup=1)
    with torch.no_grad():
        for i in range(6):
            b = data.take(torch.arange(i * 256, (i + 1) * 256) % len(data))
            model(b.codes, b.days, b.lengths)
            infer.update(len(b))
    return {"train_patients_per_s": meter.rate, "inference_patients_per_s": infer.rate,
            "parameters": count_parameters(model)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    prepared = prepare(cfg, load_cohort(cfg))
    result: dict[str, float] = {}
    for model in ("meddiffusion", "lstm"):
        plain = measure(dataclasses.replace(cfg, model=model, augment=False), prepared)
        augmented = measure(dataclasses.replace(cfg, model=model, augment=True), prepared)
        result.update({
            f"{model}_train_patients_per_s": plain["train_patients_per_s"],
            f"{model}_diffusion_train_patients_per_s": augmented["train_patients_per_s"],
            f"{model}_diffusion_overhead": plain["train_patients_per_s"] / augmented["train_patients_per_s"],
            f"{model}_inference_patients_per_s": augmented["inference_patients_per_s"],
            f"{model}_parameters_with_denoiser": augmented["parameters"],
        })
    result.update(batch_size=cfg.batch_size, threads=torch.get_num_threads(), machine=platform.processor() or "cpu")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "bench.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
