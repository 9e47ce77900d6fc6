"""A non-neural reference row for the results table (not in the paper): logistic regression on code counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from papers.meddiffusion.cohort import PaddedBatch
from papers.meddiffusion.engine import Prepared, evaluate_predictions


def code_counts(data: PaddedBatch, vocab_size: int) -> np.ndarray:
    """(N, vocab_size + 1) counts of each code over the kept visits (column 0 = padding, dropped)."""
    flat = data.codes.reshape(len(data), -1)
    counts = torch.zeros(len(data), vocab_size + 1).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    return counts[:, 1:].numpy()


def logistic_regression_reference(prepared: Prepared) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Fit on the training patients; test metrics like the neural runs (cut tuned on validation) and the
    validation/test (labels, probabilities)."""
    x = {s: code_counts(prepared.data.take(getattr(prepared.splits, s)), prepared.vocab_size)
         for s in ("train", "val", "test")}
    y = {s: prepared.data.labels[getattr(prepared.splits, s)].numpy() for s in ("train", "val", "test")}
    model = LogisticRegression(max_iter=5000).fit(np.log1p(x["train"]), y["train"])
    probs = {s: (y[s], model.predict_proba(np.log1p(x[s]))[:, 1]) for s in ("val", "test")}
    return {**evaluate_predictions(probs), "epochs_run": 0}, probs
