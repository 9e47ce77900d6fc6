"""A thin bridge from the registry's numpy arrays to torch DataLoaders."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def array_loader(*arrays: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over aligned numpy arrays; shuffling is reproducible through ``seed``."""
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"arrays differ in length: {[len(a) for a in arrays]}")
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)


def images_to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) images to float32 (N, 1, H, W) in [-1, 1], the range diffusion models train on."""
    return torch.from_numpy(np.array(images, dtype=np.float32)).div(127.5).sub(1.0).unsqueeze(1)
