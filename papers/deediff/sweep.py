"""Sampling with early exits or static truncation, and the per-configuration measurements of the sweep."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from papers.deediff.config import Config
from papers.deediff.diffusion import VPSDE, sample
from papers.deediff.model import UViT
from shared.accel import count_flops


@dataclasses.dataclass
class ExitPolicy:
    """How a forward pass ends: ``threshold`` (DeeDiff early exit), ``n_layers`` (static truncation; None = full
    depth) or ``schedule`` (a static depth per sampling step, in sampling order: the same for every sample)."""

    name: str
    threshold: float | None = None
    n_layers: int | None = None
    patience: int = 2
    schedule: tuple[int, ...] | None = None

    def model_fn(self, model: UViT):
        """The sampler's model function; a schedule is consumed one entry per call (one sampling run)."""
        steps = iter(self.schedule) if self.schedule is not None else None

        def fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            if self.threshold is not None:
                return model.forward_early_exit(x, t, y, self.threshold, self.patience)
            if steps is not None:
                depth = next(steps, None)
                if depth is None:
                    raise ValueError(f"schedule of {len(self.schedule)} depths is shorter than the sampler's steps")
            else:
                depth = model.n_layers if self.n_layers is None else self.n_layers
            return model(x, t, y, n_layers=depth), torch.full((x.shape[0],), depth, dtype=torch.long)

        return fn


@dataclasses.dataclass
class FlopTable:
    """FLOPs of one forward pass for one image (torch's FlopCounterMode: a multiply-add counts 2)."""

    static: list[int]  # static[k - 1]: the first k layers and the head
    uem: int  # one uncertainty module

    def early_exit(self, depth: np.ndarray, n_layers: int) -> np.ndarray:
        """FLOPs of an early-exit pass that ran ``depth`` layers: those layers, their UEMs (none after the last
        layer, which always exits) and the head once."""
        depth = np.asarray(depth)
        return np.asarray(self.static)[depth - 1] + np.minimum(depth, n_layers - 1) * self.uem


def flop_table(model: UViT, cfg: Config) -> FlopTable:
    x = torch.zeros(1, cfg.channels, cfg.image_size, cfg.image_size)
    t = torch.full((1,), 500.0)
    y = torch.zeros(1, dtype=torch.long) if cfg.num_classes > 0 else None
    static = [count_flops(model, x, t, y, n_layers=k) for k in range(1, model.n_layers + 1)]
    with torch.no_grad():
        tokens, time_emb = model.embed(x, t, y)
    return FlopTable(static, count_flops(model.certainty, 0, tokens, time_emb))


def generate(
    model: UViT, cfg: Config, policy: ExitPolicy, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, float]:
    """``n`` samples under ``policy`` with noise fixed by ``seed`` (the same for every policy: paired comparison).

    Returns (images in [-1, 1], labels, layers executed (steps, n), t per step, sampling seconds).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x_init = torch.randn((n, cfg.channels, cfg.image_size, cfg.image_size), generator=gen).to(device)
    labels = torch.arange(n) % max(cfg.num_classes, 1)
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    images, depths, seconds, times = [], [], 0.0, np.zeros(0)
    for start in range(0, n, cfg.eval_batch_size):
        sl = slice(start, start + cfg.eval_batch_size)
        batch_gen = torch.Generator().manual_seed(seed * 7919 + start)
        y = labels[sl].to(device) if cfg.num_classes > 0 else None
        tick = time.perf_counter()
        x, depth, times = sample(sde, policy.model_fn(model), x_init[sl], y, cfg.sample_steps, cfg.sampler, batch_gen)
        seconds += time.perf_counter() - tick
        images.append(x.clamp(-1, 1).cpu())
        depths.append(depth)
    return torch.cat(images), labels, np.concatenate(depths, axis=1), times, seconds
