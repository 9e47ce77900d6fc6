"""Padding helpers shared by the models and the augmenters (visits are left-aligned, padding at the end)."""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) boolean, True on real visits."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def last_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x[b, lengths[b] - 1] for (B, T, H) x."""
    return x[torch.arange(x.shape[0], device=x.device), lengths.to(x.device) - 1]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real visits of (B, T, d) tensors (padded visits are ignored)."""
    mask = valid_mask(lengths, pred.shape[1]).unsqueeze(-1).to(pred.dtype)
    return (((pred - target) ** 2) * mask).sum() / (mask.sum() * pred.shape[-1])
