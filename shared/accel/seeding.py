"""Seeding of python, numpy, torch (and a JAX key), and torch's deterministic mode."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and (if installed) torch's generators, on every device."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool = True) -> None:
    """Ask torch for deterministic kernels (errors on ops that have none) and fixed cuBLAS workspaces."""
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


def jax_key(seed: int) -> Any:
    """A JAX PRNG key for ``seed`` (JAX draws no hidden global state, so this is all the seeding it needs)."""
    import jax

    return jax.random.key(seed)
