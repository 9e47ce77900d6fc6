"""Training images from the shared registry as float tensors in [-1, 1], shape (N, C, H, W)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from papers.deediff.config import Config
from shared.data import load

UNLABELLED = ("celeba64",)  # data sets without class labels (unconditional configs only)


def load_images(cfg: Config, split: str = "train", limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of ``cfg.dataset``: the first ``limit`` (else ``cfg.train_subset``) images when > 0.

    Unlabelled data sets (CelebA-64) get all-zero labels and need ``num_classes: 0``. An ``image_size`` that
    divides the native size gives average-pooled images (MNIST 28 -> 14).
    """
    limit = limit or cfg.train_subset
    if cfg.dataset == "synthetic":
        return synthetic_images(cfg, split, limit or 4096)
    kwargs: dict[str, Any] = {"split": split}
    if cfg.dataset in UNLABELLED:
        if cfg.num_classes > 0:
            raise ValueError(f"{cfg.dataset} has no class labels: set num_classes: 0 (unconditional)")
        kwargs.update(root=cfg.data_root or None, limit=limit or None)
    data = load(cfg.dataset, **kwargs)
    images = np.asarray(data["images"])
    labels = np.asarray(data["labels"]) if "labels" in data else np.zeros(len(images), dtype=np.int64)
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).div(127.5).sub(1.0)
    if x.shape[-1] > cfg.image_size and x.shape[-1] % cfg.image_size == 0:
        x = F.avg_pool2d(x, x.shape[-1] // cfg.image_size)
    if tuple(x.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"{cfg.dataset} images have shape {tuple(x.shape[1:])}, but the config says "
            f"channels={cfg.channels}, image_size={cfg.image_size}"
        )
    return x, torch.from_numpy(labels.astype(np.int64))


def at_size(images: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Images bilinearly resized to ``size`` (the feature network's 28x28) when they are smaller."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def synthetic_images(cfg: Config, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded uniform-noise images of the config's shape and cycling labels, for timing runs where the real data
    are absent (``dataset: synthetic``, e.g. the GPU check of configs/paper.yaml); nothing to learn from."""
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    x = torch.rand((n, cfg.channels, cfg.image_size, cfg.image_size), generator=gen) * 2 - 1
    return x, torch.arange(n) % max(cfg.num_classes, 1)
