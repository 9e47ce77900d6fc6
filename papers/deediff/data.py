"""Training images from the shared registry as float tensors in [-1, 1], shape (N, C, H, W)."""

from __future__ import annotations

import numpy as np
import torch

from papers.deediff.config import Config
from shared.data import load


def load_images(cfg: Config, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of ``cfg.dataset``; the first ``cfg.train_subset`` of them when that is > 0."""
    data = load(cfg.dataset, split=split)
    images, labels = np.asarray(data["images"]), np.asarray(data["labels"])
    if cfg.train_subset > 0:
        images, labels = images[: cfg.train_subset], labels[: cfg.train_subset]
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).div(127.5).sub(1.0)
    if tuple(x.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"{cfg.dataset} images have shape {tuple(x.shape[1:])}, but the config says "
            f"channels={cfg.channels}, image_size={cfg.image_size}"
        )
    return x, torch.from_numpy(labels.astype(np.int64))
