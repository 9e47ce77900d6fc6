"""Each metric against an independent computation: a hand-worked case, scipy, or a plain loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from shared.metrics import (
    FeatureStats,
    binary_metrics,
    causal_lm_perplexity,
    energy_distance,
    frechet_distance,
    mmd_rbf,
    sparsity_report,
)


def test_binary_metrics_hand_worked() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.8])
    m = binary_metrics(y, s)
    # ROC-AUC: of the 4 (pos, neg) pairs, (0.4 < 0.6) is the only one ranked wrong -> 3/4.
    assert m["roc_auc"] == pytest.approx(0.75)
    # AP: ranks 0.8 (pos, P=1, R=.5), 0.6 (neg), 0.4 (pos, P=2/3, R=1) -> 0.5*1 + 0.5*2/3.
    assert m["pr_auc"] == pytest.approx(0.5 + 1 / 3)
    # At 0.5: predictions [0, 1, 0, 1]: TP=1, FP=1, FN=1 -> F1 = 0.5; p_o = 0.5, p_e = 0.5 -> kappa = 0.
    assert m["f1"] == pytest.approx(0.5)
    assert m["kappa"] == pytest.approx(0.0)


def test_roc_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        binary_metrics(np.ones(3), np.array([0.1, 0.2, 0.3]))


def test_energy_distance_matches_scipy_in_1d() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(0.5, 1.2, size=150)
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) for 1-D samples.
    assert math.sqrt(energy_distance(x, y)) == pytest.approx(scipy.stats.energy_distance(x, y), rel=1e-10)


def test_mmd_matches_plain_loop() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 2)), rng.normal(1, 1, size=(9, 2))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-((a - b) ** 2).sum() / 2)

    kxx = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (12 * 11)
    kyy = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (9 * 8)
    kxy = sum(k(a, b) for a in x for b in y) / (12 * 9)
    assert mmd_rbf(x, y, bandwidths=(1.0,)) == pytest.approx(kxx + kyy - 2 * kxy)
    assert abs(mmd_rbf(x, x[::-1].copy(), bandwidths=(1.0,))) < 0.2


def test_frechet_distance_closed_form() -> None:
    # Diagonal Gaussians: |mu_a - mu_b|^2 + sum_i (s_a,i - s_b,i)^2 with s the standard deviations.
    a = FeatureStats(np.array([0.0, 1.0]), np.diag([1.0, 4.0]), 10, "net")
    b = FeatureStats(np.array([1.0, 1.0]), np.diag([4.0, 9.0]), 10, "net")
    assert frechet_distance(a, b) == pytest.approx(1.0 + (1 - 2) ** 2 + (2 - 3) ** 2)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="different feature networks"):
        frechet_distance(a, FeatureStats(b.mu, b.sigma, 10, "other"))


class _Uniform(torch.nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, ids: torch.Tensor):
        return type("Out", (), {"logits": torch.zeros(*ids.shape, self.vocab)})()


def test_perplexity_of_uniform_model_is_vocab_size() -> None:
    ids = torch.randint(0, 50, (1000,))
    assert causal_lm_perplexity(_Uniform(50), ids, window=64, batch_size=3, progress=False) == pytest.approx(50.0)


def test_perplexity_matches_hf_loss_on_disjoint_windows() -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (3 * 16 + 5,))  # the 5-token tail is dropped
    with torch.no_grad():
        losses = [model(w[None], labels=w[None]).loss for w in ids[:48].view(3, 16)]
    expected = math.exp(torch.stack(losses).mean().item())
    assert causal_lm_perplexity(model, ids, window=16, batch_size=2, progress=False) == pytest.approx(expected, rel=1e-5)


def test_sparsity_report() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    with torch.no_grad():
        model[0].weight[:2] = 0  # 8 of 20
        model[2].weight.zero_()  # 10 of 10
    report = sparsity_report(model)
    assert report.per_layer == {"0": pytest.approx(0.4), "2": pytest.approx(1.0)}
    assert report.overall == pytest.approx(18 / 30)
