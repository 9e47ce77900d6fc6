"""A non-neural reference row for the results table (not in the paper): logistic regression on code counts."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from papers.meddiffusion.cohort import PaddedBatch
from papers.meddiffusion.engine import Prepared, score, tuned_threshold
from shared.metrics import cohen_kappa, f1


def code_counts(data: PaddedBatch, vocab_size: int) -> np.ndarray:
    """(N, vocab_size + 1) counts of each code over the kept visits (column 0 = padding, dropped)."""
    flat = data.codes.reshape(len(data), -1)
    counts = torch.zeros(len(data), vocab_size + 1).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    return counts[:, 1:].numpy()


def logistic_regression_reference(prepared: Prepared) -> dict[str, float]:
    """Fit on the training patients, report test metrics like the neural runs (cut tuned on validation)."""
    x = {s: code_counts(prepared.data.take(getattr(prepared.splits, s)), prepared.vocab_size)
         for s in ("train", "val", "test")}
    y = {s: prepared.data.labels[getattr(prepared.splits, s)].numpy() for s in ("train", "val", "test")}
    model = LogisticRegression(max_iter=5000).fit(np.log1p(x["train"]), y["train"])
    probs = {s: model.predict_proba(np.log1p(x[s]))[:, 1] for s in ("val", "test")}
    cut = tuned_threshold(y["val"], probs["val"])
    pred = (probs["test"] >= cut).astype(int)
    return {**{f"test_{k}": v for k, v in score(y["test"], probs["test"]).items()},
            "test_f1_tuned": f1(y["test"], pred), "test_kappa_tuned": cohen_kappa(y["test"], pred), "epochs_run": 0}
