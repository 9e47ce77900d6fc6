"""Binary classification metrics (scikit-learn underneath), usable from numpy, torch or JAX arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


def _check_binary(y_true: np.ndarray) -> None:
    if np.unique(y_true).size < 2:
        raise ValueError("ROC-AUC and PR-AUC need both classes in y_true")


def roc_auc(y_true: Any, scores: Any) -> float:
    y = _np(y_true)
    _check_binary(y)
    return float(skm.roc_auc_score(y, _np(scores)))


def pr_auc(y_true: Any, scores: Any) -> float:
    """Area under the precision-recall curve as average precision (the step-wise sum, not trapezoids)."""
    y = _np(y_true)
    _check_binary(y)
    return float(skm.average_precision_score(y, _np(scores)))


def f1(y_true: Any, y_pred: Any) -> float:
    return float(skm.f1_score(_np(y_true), _np(y_pred), zero_division=0))


def cohen_kappa(y_true: Any, y_pred: Any) -> float:
    return float(skm.cohen_kappa_score(_np(y_true), _np(y_pred)))


def binary_metrics(y_true: Any, scores: Any, threshold: float = 0.5) -> dict[str, float]:
    """PR-AUC and ROC-AUC from scores; F1 and Cohen's kappa from scores thresholded at ``threshold``."""
    y, s = _np(y_true), _np(scores)
    pred = (s >= threshold).astype(int)
    return {"pr_auc": pr_auc(y, s), "roc_auc": roc_auc(y, s), "f1": f1(y, pred), "kappa": cohen_kappa(y, pred)}
