"""Metrics shared across papers, each tested against an independent computation."""

from shared.metrics.classification import binary_metrics, cohen_kappa, f1, pr_auc, roc_auc
from shared.metrics.distances import energy_distance, mmd_rbf
from shared.metrics.frechet import FeatureStats, frechet_distance
from shared.metrics.perplexity import causal_lm_perplexity
from shared.metrics.sparsity import SparsityReport, sparsity, sparsity_report

__all__ = [
    "FeatureStats",
    "SparsityReport",
    "binary_metrics",
    "causal_lm_perplexity",
    "cohen_kappa",
    "energy_distance",
    "f1",
    "frechet_distance",
    "mmd_rbf",
    "pr_auc",
    "roc_auc",
    "sparsity",
    "sparsity_report",
]
