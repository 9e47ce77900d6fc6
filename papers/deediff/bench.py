"""Sampling throughput with DeeDiff early exits against the full model, as ratios measured in one run:
``python -m papers.deediff.bench --config FILE --out DIR`` (uses the trained weights of the config's weights
folder; trains them first if they are missing)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from papers.deediff.config import Config
from papers.deediff.diffusion import VPSDE, sample
from papers.deediff.search import searched_baseline
from papers.deediff.sweep import ExitPolicy
from papers.deediff.train import configure_torch, load_weights, train
from shared.accel import Timer
from shared.runs import entrypoint, load_config, parse_run_args


def time_policy(model, cfg: Config, policy: ExitPolicy, batch: int, device: torch.device) -> tuple[float, float]:
    """Seconds for one full sampling run of ``batch`` images, and the fraction of layers executed."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn((batch, cfg.channels, cfg.image_size, cfg.image_size), generator=gen).to(device)
    y = (torch.arange(batch) % cfg.num_classes).to(device) if cfg.num_classes > 0 else None
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    with Timer(device) as timer:
        _, depth, _ = sample(sde, policy.model_fn(model), x, y, cfg.sample_steps, cfg.sampler, gen)
    return timer.seconds, float(depth.mean() / model.n_layers)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    cfg = searched_baseline(cfg, Path(args.config).resolve().parent)
    device = configure_torch(cfg)
    weights = cfg.weights_path(args.out) / "deediff.pt"
    if not weights.exists():
        print(f"no trained weights at {weights}: training them first with {args.config}")
        train(cfg, args.out)
    model = load_weights(weights, cfg).to(device)
    policies = [ExitPolicy("full"), ExitPolicy(f"exit {cfg.bench_threshold:g}", cfg.bench_threshold, patience=cfg.patience)]
    result: dict[str, Any] = {"device": str(device), "machine": platform.processor() or platform.machine(),
                              "torch_threads": torch.get_num_threads(), "sampler": cfg.sampler,
                              "sample_steps": cfg.sample_steps, "threshold": cfg.bench_threshold, "batches": {}}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    for batch in cfg.bench_batch_sizes:
        for policy in policies:  # warm-up
            time_policy(model, cfg, policy, batch, device)
        seconds = {p.name: [] for p in policies}
        fraction = {}
        for _ in range(cfg.bench_repeats):  # interleaved, so load changes on a shared machine hit both alike
            for policy in policies:
                s, fraction[policy.name] = time_policy(model, cfg, policy, batch, device)
                seconds[policy.name].append(s)
        rates = {name: batch / float(np.median(s)) for name, s in seconds.items()}
        full, exit_name = policies[0].name, policies[1].name
        result["batches"][str(batch)] = {
            "images_per_s": rates, "layer_fraction": fraction,
            "speedup": rates[exit_name] / rates[full],
        }
        print(f"batch {batch}: full {rates[full]:.2f} img/s, {exit_name} {rates[exit_name]:.2f} img/s "
              f"({fraction[exit_name]:.1%} layers) -> speed-up {rates[exit_name] / rates[full]:.2f}x")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "bench.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
