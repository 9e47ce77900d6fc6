"""Frechet distance between Gaussians fitted to features (the FID formula, with a pluggable feature network)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
from scipy import linalg


@dataclasses.dataclass
class FeatureStats:
    """Mean and covariance of a feature network's outputs, tagged with the network that produced them."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    feature_net: str

    @classmethod
    def from_features(cls, features: np.ndarray, feature_net: str) -> FeatureStats:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"need a 2-D array of at least two feature rows, got shape {features.shape}")
        return cls(features.mean(0), np.cov(features, rowvar=False), len(features), feature_net)

    @classmethod
    def from_batches(cls, batches: Iterable[np.ndarray], embed: Callable[[np.ndarray], np.ndarray], feature_net: str) -> FeatureStats:
        return cls.from_features(np.concatenate([np.asarray(embed(b)) for b in batches]), feature_net)


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017, eq. 6)."""
    if a.feature_net != b.feature_net:
        raise ValueError(f"statistics from different feature networks: {a.feature_net!r} vs {b.feature_net!r}")
    diff = a.mu - b.mu
    covmean = linalg.sqrtm(a.sigma @ b.sigma)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(a.sigma)) * eps
        covmean = linalg.sqrtm((a.sigma + offset) @ (b.sigma + offset))
    covmean = covmean.real
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean))
