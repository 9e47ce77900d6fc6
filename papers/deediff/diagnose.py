"""Quick training diagnostics: ``python -m papers.deediff.diagnose --config FILE --out DIR [seconds=150] [key=value]``.

Trains a baseline U-ViT for a wall-clock budget (no checkpoints), then reports the EMA model's noise-prediction MSE
on held-out images at fixed t beside the per-pixel Gaussian predictor (the best predictor that ignores all pixel
correlations, eps_hat = sqrt(1 - a) (x_t - sqrt(a) mu) / (a var + 1 - a)), and the class accuracy and FID of 200
DDIM samples. Used to size configs/small.yaml (README, "Diagnosis"); writes diagnose.json and samples.png.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from papers.deediff.config import Config
from papers.deediff.data import load_images
from papers.deediff.diffusion import VPSDE, baseline_loss, mean_sq, net_time
from papers.deediff.model import UViT
from papers.deediff.sweep import ExitPolicy, generate
from papers.deediff.train import batch_for_step, configure_torch, lr_at, make_optimizer, optimizer_step
from shared.metrics import frechet_distance
from shared.runs import load_config, parse_run_args

PROBE_T = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def gaussian_mse(sde: VPSDE, x0: torch.Tensor, noise: torch.Tensor, t: float, mu: torch.Tensor, var: torch.Tensor) -> float:
    """Noise MSE of the per-pixel Gaussian posterior mean (data ~ N(mu, diag var))."""
    a = sde.cum_alpha(torch.tensor(t))
    xt = sde.perturb(x0, torch.full((len(x0),), t), noise)
    return float(mean_sq(noise - (1 - a).sqrt() * (xt - a.sqrt() * mu) / (a * var + 1 - a)).mean())


@torch.no_grad()
def model_mse(model: UViT, sde: VPSDE, x0: torch.Tensor, y: torch.Tensor | None, noise: torch.Tensor, t: float) -> float:
    tb = torch.full((len(x0),), t)
    return float(mean_sq(noise - model(sde.perturb(x0, tb, noise), net_time(tb), y)).mean())


def diagnose(cfg: Config, out: Path, seconds: float) -> dict[str, Any]:
    configure_torch(cfg)
    images, labels = load_images(cfg, "train")
    test, test_labels = load_images(cfg, "test", limit=500)
    y_test = test_labels if cfg.num_classes > 0 else None
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(5))
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    mu, var = images.mean(0), images.var(0)
    model = UViT(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = make_optimizer(cfg, model.backbone_parameters(), cfg.lr)
    curve, step, tick = [], 0, time.perf_counter()
    while time.perf_counter() - tick < seconds:
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, cfg.lr)
        x0, y, t, eps = batch_for_step(cfg, step, images, labels)
        loss = baseline_loss(model(sde.perturb(x0, t, eps), net_time(t), y if cfg.num_classes > 0 else None), eps)
        optimizer_step(cfg, model, ema, opt, loss, step)
        step += 1
        if step % 100 == 0:
            curve.append({"step": step, "seconds": time.perf_counter() - tick,
                          **{f"mse_t{t:g}": model_mse(ema.eval(), sde, test, y_test, noise, t) for t in PROBE_T[:4]}})
            print(curve[-1], flush=True)
    train_seconds = time.perf_counter() - tick
    result: dict[str, Any] = {
        "steps": step, "train_seconds": train_seconds, "images_per_s": step * cfg.batch_size / train_seconds,
        "parameters": sum(p.numel() for p in model.backbone_parameters()), "curve": curve,
        "gaussian_mse": {f"t{t:g}": gaussian_mse(sde, test, noise, t, mu, var) for t in PROBE_T},
        "ema_mse": {f"t{t:g}": model_mse(ema.eval(), sde, test, y_test, noise, t) for t in PROBE_T},
    }
    samples, sample_labels, *_ = generate(ema, dataclasses.replace(cfg, eval_batch_size=200), ExitPolicy("full"), 200, 1)
    if cfg.dataset in ("mnist", "fashion_mnist"):
        from shared.metrics.feature_net import image_feature_network

        net = image_feature_network(cfg.dataset)
        result["fid_200_samples"] = frechet_distance(net.stats(samples), net.reference_stats("test"))
        if cfg.num_classes > 0:
            result["class_accuracy"] = float((net.predict(samples) == sample_labels.numpy()).mean())
    out.mkdir(parents=True, exist_ok=True)
    grid = samples[:100].permute(0, 2, 3, 1).reshape(10, 10, cfg.image_size, cfg.image_size, cfg.channels)
    grid = grid.permute(0, 2, 1, 3, 4).reshape(10 * cfg.image_size, 10 * cfg.image_size, cfg.channels)
    pixels = ((grid + 1) * 127.5).round().to(torch.uint8).numpy()
    Image.fromarray(pixels[..., 0] if cfg.channels == 1 else pixels).save(out / "samples.png")
    (out / "diagnose.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    seconds = [o for o in args.overrides if o.startswith("seconds=")]
    overrides = [o for o in args.overrides if not o.startswith("seconds=")]
    cfg = load_config(Config, args.config, overrides)
    return diagnose(cfg, Path(args.out), float(seconds[-1].split("=", 1)[1]) if seconds else 150.0)


if __name__ == "__main__":
    main()
