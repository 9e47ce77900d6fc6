"""Sample-based distances between low-dimensional distributions: RBF-kernel MMD and energy distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import cdist


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidths: Sequence[float] = (0.1, 0.5, 1.0, 2.0)) -> float:
    """Unbiased squared MMD with a sum of Gaussian kernels exp(-|a-b|^2 / (2 h^2)) (Gretton et al. 2012, eq. 3)."""
    x, y = _as_2d(x), _as_2d(y)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("MMD needs at least two samples on each side")
    dxx, dyy, dxy = cdist(x, x, "sqeuclidean"), cdist(y, y, "sqeuclidean"), cdist(x, y, "sqeuclidean")
    total = 0.0
    for h in bandwidths:
        kxx, kyy, kxy = (np.exp(-d / (2 * h * h)) for d in (dxx, dyy, dxy))
        total += (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total -= 2 * kxy.mean()
    return float(total)


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance D = 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely & Rizzo), V-statistic form."""
    x, y = _as_2d(x), _as_2d(y)
    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())
