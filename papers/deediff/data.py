"""Training images from the shared registry as float tensors in [-1, 1], shape (N, C, H, W)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from papers.deediff.config import Config
from shared.data import load

UNLABELLED = ("celeba64",)  # data sets without class labels (unconditional configs only)


def load_images(cfg: Config, split: str = "train", limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of ``cfg.dataset``: the first ``limit`` (else ``cfg.train_subset``) images when > 0.

    Unlabelled data sets (CelebA-64) get all-zero labels and need ``num_classes: 0``.
    """
    limit = limit or cfg.train_subset
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
    if tuple(x.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"{cfg.dataset} images have shape {tuple(x.shape[1:])}, but the config says "
            f"channels={cfg.channels}, image_size={cfg.image_size}"
        )
    return x, torch.from_numpy(labels.astype(np.int64))
