"""Training diagnostics for the U-ViT baseline.

``python -m papers.deediff.diagnose --config FILE --out DIR [seconds=150] [key=value ...]``: train for a wall-clock
budget (no checkpoints), then the EMA model's noise-prediction MSE on held-out images at fixed t beside the
per-pixel Gaussian predictor (the best predictor that ignores all pixel correlations,
eps_hat = sqrt(1 - a) (x_t - sqrt(a) mu) / (a var + 1 - a)), and the class accuracy and FID of 200 DDIM samples.

``... overfit=10 [arch=both] [max_steps=1500] [eval_every=100] [key=value ...]``: the overfit-first protocol. Train on
10 training images (one per class) and, every ``eval_every`` steps, sample 5 images per class from the EMA model
and score their label match (the feature network's class = the conditioning class) and their pixel MSE to the
class's training image, and its label reliance (:func:`label_reliance`); stop once label match > 0.9. ``arch=unet`` (or ``both``) trains a diffusers
``UNet2DModel`` reference in the same loop (same data, noise, optimiser and sampler). Writes overfit.json and
overfit_curves.png.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from papers.deediff.config import Config
from papers.deediff.data import load_images
from papers.deediff.diffusion import VPSDE, baseline_loss, mean_sq, net_time
from papers.deediff.model import UViT
from papers.deediff.sweep import ExitPolicy, generate
from papers.deediff.train import batch_for_step, configure_torch, lr_at, make_optimizer, optimizer_step
from papers.deediff.validation import sample_scores
from shared.runs import entrypoint, load_config, parse_run_args

PROBE_T = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
LABEL_PROBE_T = 0.3  # alpha_bar = 0.39: the class still changes the best noise prediction a lot
LABEL_PROBE_IMAGES = 200
LABEL_MATCH_TARGET = 0.9


class UNetReference(nn.Module):
    """A small diffusers ``UNet2DModel`` noise predictor with the U-ViT's call signature (no exits: one 'layer')."""

    n_layers = 1

    def __init__(self, cfg: Config, channels: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(
            sample_size=cfg.image_size, in_channels=cfg.channels, out_channels=cfg.channels,
            block_out_channels=channels, layers_per_block=1, norm_num_groups=8,
            down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
            num_class_embeds=cfg.num_classes or None,
        )

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, n_layers: int | None = None) -> torch.Tensor:
        return self.unet(x, t, class_labels=y).sample


def one_per_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` training images taken round-robin over the classes (the first unused image of each)."""
    classes = int(labels.max()) + 1
    if n % classes:
        raise ValueError(f"overfit={n} must be a multiple of the {classes} classes (one image per class: {classes})")
    per_class = [torch.nonzero(labels == c).flatten()[: n // classes] for c in range(classes)]
    return torch.stack(per_class, dim=1).flatten()


def fit(
    cfg: Config, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, eval_every: int,
    evaluate: Callable[[nn.Module, int], dict[str, float]], target: float | None = None,
    log: Callable[[dict[str, Any]], None] = lambda row: print(row, flush=True),
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Baseline training (L_simple, Eq. 2) for up to ``steps`` steps; every ``eval_every`` steps the EMA model is
    scored by ``evaluate(ema, step)``; stops early once its ``class_accuracy`` exceeds ``target``.
    Returns (EMA model, the curve of scores with steps and CPU/wall seconds)."""
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    device = next(model.parameters()).device
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = make_optimizer(cfg, model.backbone_parameters(), cfg.lr)
    y_in = cfg.num_classes > 0
    curve: list[dict[str, Any]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, cfg.lr)
        x0, y, t, noise = (v.to(device) for v in batch_for_step(cfg, step, images, labels))
        loss = baseline_loss(model(sde.perturb(x0, t, noise), net_time(t), y if y_in else None), noise)
        optimizer_step(cfg, model, ema, opt, loss, step)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            row = {"step": step + 1, "loss": float(loss.detach()), **evaluate(ema.eval(), step + 1),
                   "wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
            curve.append(row)
            log(row)
            if target is not None and row["class_accuracy"] > target:
                break
    return ema, curve


def steps_to(curve: list[dict[str, Any]], target: float) -> int | None:
    """The first evaluated step whose label match exceeds ``target`` (None: never within the run)."""
    return next((r["step"] for r in curve if r["class_accuracy"] > target), None)


def overfit(cfg: Config, out: Path, n_images: int, archs: list[str], max_steps: int, eval_every: int) -> dict[str, Any]:
    """The overfit-first protocol of the module docstring, for each of ``archs`` ("uvit", "unet")."""
    from shared.metrics.feature_net import image_feature_network

    images, labels = load_images(cfg, "train")
    idx = one_per_class(labels, n_images)
    x, y = images[idx], labels[idx]
    net = image_feature_network(cfg.dataset)
    ref = net.reference_stats("test")
    per_class = 5
    n_eval = per_class * cfg.num_classes
    eval_cfg = dataclasses.replace(cfg, eval_batch_size=n_eval)
    targets = x[torch.argsort(y)]  # the training image of class c, for the label c (one image per class)
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    probe_x, probe_y, probe_noise = label_probe(x, y, cfg.seed + 2)

    def score(model: nn.Module, step: int) -> dict[str, float]:
        samples, sample_labels, *_ = generate(model, eval_cfg, ExitPolicy("full"), n_eval, cfg.seed + 1)
        nearest = mean_sq(samples - targets[sample_labels]) if n_images == cfg.num_classes else torch.tensor(float("nan"))
        return {**sample_scores(net, ref, samples, sample_labels), "mse_to_training_image": float(nearest.mean()),
                **label_reliance(model, sde, probe_x, probe_y, probe_noise)}

    result: dict[str, Any] = {"n_images": n_images, "train_indices": idx.tolist(), "feature_net": net.name,
                              "label_match_target": LABEL_MATCH_TARGET, "eval_samples": n_eval, "runs": {}}
    for arch in archs:
        configure_torch(cfg)  # same initial seed state for every architecture
        model = UViT(cfg) if arch == "uvit" else UNetReference(cfg)
        _, curve = fit(cfg, model, x, y, max_steps, eval_every, score, target=LABEL_MATCH_TARGET)
        result["runs"][arch] = {"parameters": sum(p.numel() for p in model.backbone_parameters()), "curve": curve,
                                "steps_to_target": steps_to(curve, LABEL_MATCH_TARGET),
                                "best_label_match": max(r["class_accuracy"] for r in curve)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "overfit.json").write_text(json.dumps(result, indent=2))
    plot_curves({a: r["curve"] for a, r in result["runs"].items()}, out / "overfit_curves.png",
                f"memorising {n_images} MNIST images (batch {cfg.batch_size})", target=LABEL_MATCH_TARGET)
    print(json.dumps({a: {k: v for k, v in r.items() if k != "curve"} for a, r in result["runs"].items()}, indent=1))
    return result


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, title: str, target: float | None = None) -> Path:
    """Label match (class accuracy of samples) against training steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot([r["step"] for r in curve], [r["class_accuracy"] for r in curve], "o-", ms=3, label=name)
    if target is not None:
        ax.axhline(target, color="k", ls=":", lw=1)
    ax.set_xlabel("training steps")
    ax.set_ylabel("class accuracy of samples")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gaussian_mse(sde: VPSDE, x0: torch.Tensor, noise: torch.Tensor, t: float, mu: torch.Tensor, var: torch.Tensor) -> float:
    """Noise MSE of the per-pixel Gaussian posterior mean (data ~ N(mu, diag var))."""
    a = sde.cum_alpha(torch.tensor(t))
    xt = sde.perturb(x0, torch.full((len(x0),), t), noise)
    return float(mean_sq(noise - (1 - a).sqrt() * (xt - a.sqrt() * mu) / (a * var + 1 - a)).mean())


def label_probe(images: torch.Tensor, labels: torch.Tensor, seed: int,
                n: int = LABEL_PROBE_IMAGES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed inputs of :func:`label_reliance`: the first ``n`` images (cycled when fewer), their labels and
    seeded noise."""
    idx = torch.arange(n) % len(images)
    x = images[idx]
    return x, labels[idx], torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def label_reliance(model: nn.Module, sde: VPSDE, x0: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
                   t: float = LABEL_PROBE_T) -> dict[str, float]:
    """Noise MSE at a fixed t with the true labels and with every label moved to the next class: a model that
    ignores its class condition scores the same on both (gap 0), one that uses it does worse with the wrong ones."""
    classes = int(y.max()) + 1
    right = model_mse(model, sde, x0, y, noise, t)
    wrong = model_mse(model, sde, x0, (y + 1) % classes, noise, t)
    return {"mse_right_label": right, "mse_wrong_label": wrong, "label_gap": wrong - right}


@torch.no_grad()
def model_mse(model: UViT, sde: VPSDE, x0: torch.Tensor, y: torch.Tensor | None, noise: torch.Tensor, t: float) -> float:
    tb = torch.full((len(x0),), t, device=x0.device)
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
        scores = sample_scores(net, net.reference_stats("test"), samples, sample_labels)
        result["fid_200_samples"] = scores["fid"]
        if cfg.num_classes > 0:
            result["class_accuracy"] = scores["class_accuracy"]
    out.mkdir(parents=True, exist_ok=True)
    save_grid(samples[:100], out / "samples.png")
    (out / "diagnose.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1))
    return result


def save_grid(samples: torch.Tensor, path: Path, rows: int = 10) -> None:
    """A rows x (n / rows) grid of images in [-1, 1] as a PNG."""
    n, c, h, w = samples.shape
    cols = n // rows
    grid = samples[: rows * cols].permute(0, 2, 3, 1).reshape(rows, cols, h, w, c).permute(0, 2, 1, 3, 4)
    pixels = ((grid.reshape(rows * h, cols * w, c) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(path)


def pop_option(overrides: list[str], key: str, default: str) -> tuple[str, list[str]]:
    """The value of ``key=value`` among the overrides (the last one wins) and the overrides without it."""
    found = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")]
    return (found[-1] if found else default), [o for o in overrides if not o.startswith(f"{key}=")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    overrides = list(args.overrides)
    seconds, overrides = pop_option(overrides, "seconds", "150")
    n_overfit, overrides = pop_option(overrides, "overfit", "0")
    arch, overrides = pop_option(overrides, "arch", "both")
    max_steps, overrides = pop_option(overrides, "max_steps", "1500")
    eval_every, overrides = pop_option(overrides, "eval_every", "100")
    cfg = load_config(Config, args.config, overrides)
    if int(n_overfit) > 0:
        if arch not in ("uvit", "unet", "both"):
            raise ValueError(f"arch must be uvit, unet or both, got {arch!r}")
        archs = ["uvit", "unet"] if arch == "both" else [arch]
        return overfit(cfg, Path(args.out), int(n_overfit), archs, int(max_steps), int(eval_every))
    return diagnose(cfg, Path(args.out), float(seconds))


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
