"""Bootstrap intervals for FID (n = 500 samples is noisy), single and paired.

FID is biased upwards at finite n, and a bootstrap resample (with its repeated rows) is less diverse than the sample
it came from, so resampled FIDs sit *above* the estimate: a percentile interval can miss the estimate altogether
(seen here: FID 31.1, percentile interval [32.4, 45.4]). FIDs and FID gaps therefore get the normal bootstrap
interval, estimate +- z * (standard deviation of the resampled values), which keeps the spread the bootstrap
measures and centres it on the estimate (Efron and Tibshirani 1993, Sec. 13.3).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats as scipy_stats

from shared.metrics import FeatureStats, frechet_distance


def bootstrap_values(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> np.ndarray:
    """``stat(indices)`` over ``n_boot`` resamples (with replacement) of range(n)."""
    rng = np.random.default_rng(seed)
    return np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``stat(indices)`` over ``n_boot`` resamples of range(n)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(bootstrap_values(stat, n, n_boot, seed), [tail, 100 - tail])
    return float(lo), float(hi)


def normal_bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int,
                        level: float = 0.95) -> tuple[float, float]:
    """stat(all rows) +- z * SD of ``stat`` over ``n_boot`` resamples (the normal bootstrap interval)."""
    estimate = stat(np.arange(n))
    half = scipy_stats.norm.ppf(0.5 + level / 2) * float(bootstrap_values(stat, n, n_boot, seed).std(ddof=1))
    return estimate - half, estimate + half


def fid_of(features: np.ndarray, ref: FeatureStats) -> float:
    return frechet_distance(FeatureStats.from_features(features, ref.feature_net), ref)


def fid_ci(features: np.ndarray, ref: FeatureStats, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """95% normal bootstrap interval of the FID of ``features`` against fixed reference statistics."""
    return normal_bootstrap_ci(lambda idx: fid_of(features[idx], ref), len(features), n_boot, seed)


def paired_fid_gap(a: np.ndarray, b: np.ndarray, ref: FeatureStats, n_boot: int, seed: int = 0) -> dict[str, float]:
    """FID(a) - FID(b) and its 95% normal bootstrap interval, resampling the same rows of both (row i of each comes
    from the same initial noise and label, so the comparison is paired)."""
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs equal sample sets, got {a.shape} and {b.shape}")
    lo, hi = normal_bootstrap_ci(lambda idx: fid_of(a[idx], ref) - fid_of(b[idx], ref), len(a), n_boot, seed)
    return {"gap": fid_of(a, ref) - fid_of(b, ref), "ci_low": lo, "ci_high": hi}
