"""Padding helpers shared by the models and the augmenters (visits are left-aligned, padding at the end)."""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) boolean, True on real visits."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def last_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x[b, lengths[b] - 1] for (B, T, H) x."""
    return x[torch.arange(x.shape[0], device=x.device), lengths.to(x.device) - 1]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor,
               mean_visits: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the real visits of (B, T, d) tensors (padded visits are ignored). With
    ``mean_visits`` (real visits per patient over the whole global batch, one value per row) this part of the batch
    is normalised as the global batch is, so row-weighted means over micro-batches equal the global pooled mean."""
    mask = valid_mask(lengths, pred.shape[1]).unsqueeze(-1).to(pred.dtype)
    return (((pred - target) ** 2) * mask).sum() / (visit_count(mask, mean_visits) * pred.shape[-1])


def visit_count(mask: torch.Tensor, mean_visits: torch.Tensor | None) -> torch.Tensor:
    """The normaliser of a masked mean: the real visits in ``mask`` or, given ``mean_visits``, rows x its value."""
    return mask.sum() if mean_visits is None else mask.shape[0] * mean_visits[0].to(mask.dtype)
