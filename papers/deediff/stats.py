"""Percentile-bootstrap intervals for FID (n = 500 samples is noisy), single and paired."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared.metrics import FeatureStats, frechet_distance


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``stat(indices)`` over ``n_boot`` resamples (with replacement) of range(n)."""
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def fid_of(features: np.ndarray, ref: FeatureStats) -> float:
    return frechet_distance(FeatureStats.from_features(features, ref.feature_net), ref)


def fid_ci(features: np.ndarray, ref: FeatureStats, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the FID of ``features`` against fixed reference statistics (samples resampled)."""
    return bootstrap_ci(lambda idx: fid_of(features[idx], ref), len(features), n_boot, seed)


def paired_fid_gap(a: np.ndarray, b: np.ndarray, ref: FeatureStats, n_boot: int, seed: int = 0) -> dict[str, float]:
    """FID(a) - FID(b) and its 95% interval, resampling the same rows of both (row i of each comes from the same
    initial noise and label, so the comparison is paired)."""
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs equal sample sets, got {a.shape} and {b.shape}")
    lo, hi = bootstrap_ci(lambda idx: fid_of(a[idx], ref) - fid_of(b[idx], ref), len(a), n_boot, seed)
    return {"gap": fid_of(a, ref) - fid_of(b, ref), "ci_low": lo, "ci_high": hi}
