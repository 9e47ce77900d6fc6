"""Scores of a model's own samples under the repo's feature network: class accuracy and FID.

``ValidationScorer`` picks the DeeDiff fine-tuning checkpoint as the official code does (AdaDiff ``train.py``: the
full-depth EMA model's FID every ``eval_interval`` steps, the best one kept), against the *training* split's
statistics, so that the test split stays for the reported numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from papers.deediff.config import FEATURE_NET_DATASETS, Config
from papers.deediff.data import at_size
from papers.deediff.sweep import ExitPolicy, generate
from shared.metrics import frechet_distance


def sample_scores(net: Any, ref: Any, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Class accuracy (label match) and FID of samples under the repo's feature network (28x28)."""
    scored = at_size(images)
    return {"class_accuracy": float((net.predict(scored) == labels.numpy()).mean()),
            "fid": frechet_distance(net.stats(scored), ref)}


class ValidationScorer:
    """Class accuracy and FID (against the training split) of ``n`` full-depth samples with fixed noise."""

    def __init__(self, cfg: Config, n: int, seed: int) -> None:
        if cfg.dataset not in FEATURE_NET_DATASETS:
            raise ValueError(f"no feature network for {cfg.dataset!r} (have {', '.join(FEATURE_NET_DATASETS)})")
        from shared.metrics.feature_net import image_feature_network

        self.net = image_feature_network(cfg.dataset)
        self.ref = self.net.reference_stats("train")
        self.cfg = dataclasses.replace(cfg, eval_batch_size=min(n, cfg.eval_batch_size))
        self.n, self.seed = n, seed

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        samples, labels, *_ = generate(model, self.cfg, ExitPolicy("full"), self.n, self.seed)
        return sample_scores(self.net, self.ref, samples, labels)
