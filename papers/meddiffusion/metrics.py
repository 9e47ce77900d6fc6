"""Test metrics with the paper's definitions, labelled, and bootstrap intervals over test patients.

Two PR-AUCs: ``pr_auc_trapz`` = trapezoidal area under (recall, precision), what the official code reports
(``sklearn.metrics.auc(recall, precision)``), and ``pr_auc`` = average precision (the step-wise sum). Both are
computed here in numpy (checked against scikit-learn in the tests) so that thousands of bootstrap resamples
stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from shared.metrics import cohen_kappa, f1

BOOTSTRAP_RESAMPLES = 1000


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold, from high to low, with (0, 1) prepended (sklearn's
    ``precision_recall_curve`` points, in increasing recall)."""
    order = np.argsort(-scores, kind="mergesort")
    y, s = labels[order], scores[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    return np.r_[0.0, tps / tps[-1]], np.r_[1.0, precision]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """sum_n (R_n - R_{n-1}) P_n."""
    recall, precision = pr_curve(labels, scores)
    return float(np.sum(np.diff(recall) * precision[1:]))


def pr_auc_trapezoid(labels: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoidal area under the precision-recall curve (the official code's PR-AUC)."""
    recall, precision = pr_curve(labels, scores)
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, cut: float) -> dict[str, float]:
    pred = (scores >= cut).astype(int)
    both = len(np.unique(labels)) == 2
    return {"f1": f1(labels, pred), "kappa": cohen_kappa(labels, pred) if both or pred.any() else 0.0}


def bootstrap(labels: np.ndarray, scores: Sequence[np.ndarray], statistic: Callable[..., float],
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``statistic(labels_b, *scores_b)`` on patient resamples (with replacement, the same rows for every score
    array, so paired comparisons keep their pairing); resamples with a single class are redrawn."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    n, i = len(labels), 0
    while i < resamples:
        idx = rng.integers(0, n, n)
        if labels[idx].min() == labels[idx].max():
            continue
        out[i] = statistic(labels[idx], *(s[idx] for s in scores))
        i += 1
    return out


def interval(values: np.ndarray) -> list[float]:
    """The percentile 95% interval."""
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
