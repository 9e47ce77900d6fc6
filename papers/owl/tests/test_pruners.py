"""The pruners' masks and updates and OWL's ratios against values worked by hand or computed with numpy."""

import numpy as np
import pytest
import torch

from papers.owl.pruners import (
    magnitude_mask,
    nm_mask,
    outlier_ratio,
    owl_nm_counts,
    owl_sparsities,
    parse_sparsity_type,
    sparsegpt_prune,
    wanda_mask,
)


def test_wanda_mask_hand_worked() -> None:
    weight = torch.tensor([[1.0, -2.0, 3.0, -4.0], [4.0, 3.0, 2.0, 1.0]])
    sq_norm = torch.tensor([16.0, 1.0, 1.0, 4.0])  # ||X_j|| = 4, 1, 1, 2
    # scores: row 0 = 4, 2, 3, 8; row 1 = 16, 3, 2, 2 -> the two lowest of each row go
    expected = torch.tensor([[False, True, True, False], [False, False, True, True]])
    assert torch.equal(wanda_mask(weight, sq_norm, 0.5), expected)


def test_magnitude_mask_uses_one_threshold_per_matrix() -> None:
    weight = torch.tensor([[1.0, -2.0, 3.0, -4.0], [4.0, 3.0, 2.0, 1.0]])
    expected = torch.tensor([[True, True, False, False], [False, False, True, True]])
    assert torch.equal(magnitude_mask(weight, 0.5), expected)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_nm_masks_have_exactly_n_zeros_per_group(n: int, m: int) -> None:
    torch.manual_seed(0)
    weight, sq_norm = torch.randn(8, 32), torch.rand(32) + 0.1
    for mask in (nm_mask(weight.abs(), n, m), wanda_mask(weight, sq_norm, 0.0, (n, m)), magnitude_mask(weight, 0.0, (n, m))):
        assert (mask.reshape(8, -1, m).sum(-1) == n).all()
    x = torch.randn(256, 32)
    pruned = sparsegpt_prune(weight, 2 * x.T @ x / 256, 0.0, (n, m), blocksize=16)
    assert ((pruned == 0).reshape(8, -1, m).sum(-1) == n).all()


def test_outlier_ratio_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(size=(20, 30)), rng.lognormal(size=(7, 11))
    pooled = np.concatenate([a.ravel(), b.ravel()])
    expected = 100 * np.mean(pooled > 3 * pooled.mean())
    assert outlier_ratio([torch.from_numpy(a), torch.from_numpy(b)], 3.0) == pytest.approx(expected, rel=1e-6)


def test_owl_sparsities_hand_worked() -> None:
    # D = 0, 1, 2 -> density offsets 0, .1, .2 -> centred -.1, 0, .1 -> + (1 - .7) -> 1 - that = .8, .7, .6
    np.testing.assert_allclose(owl_sparsities([0.0, 1.0, 2.0], 0.7, 0.1), [0.8, 0.7, 0.6], atol=1e-12)


def test_owl_sparsities_average_target_span_two_lambda_and_fall_with_outliers() -> None:
    ratios = np.random.default_rng(2).uniform(0.5, 9.0, size=30)
    s = owl_sparsities(ratios, 0.7, 0.08)
    assert s.mean() == pytest.approx(0.7, abs=1e-12)
    assert s.max() - s.min() == pytest.approx(0.16, abs=1e-12)
    order = np.argsort(ratios)
    assert np.all(np.diff(s[order]) <= 1e-12)  # more outliers, lower sparsity
    np.testing.assert_allclose(owl_sparsities([2.0, 2.0], 0.5, 0.1), [0.5, 0.5])


def test_owl_nm_counts_keep_the_mean_pattern() -> None:
    counts = owl_nm_counts([0.0, 1.0, 2.0, 3.0, 4.0], 4, 8, 2.0)
    assert list(counts) == [5, 4, 4, 4, 3]  # d = 0, .5, 1, 1.5, 2 -> centred, rounded: -1, -0, 0, 0, 1 (half to even)


def test_sparsegpt_beats_magnitude_on_reconstruction() -> None:
    torch.manual_seed(3)
    mixing = torch.randn(64, 64) / 8
    x = torch.randn(2048, 64) @ mixing + torch.randn(2048, 64) * torch.linspace(0.1, 3.0, 64)[torch.randperm(64)]
    weight = torch.randn(32, 64)
    hessian = 2 * x.T @ x / x.shape[0]
    pruned_gpt = sparsegpt_prune(weight, hessian, 0.6)
    pruned_mag = weight * ~magnitude_mask(weight, 0.6)
    err_gpt = ((x @ (weight - pruned_gpt).T) ** 2).mean()
    err_mag = ((x @ (weight - pruned_mag).T) ** 2).mean()
    err_wanda = ((x @ (weight * wanda_mask(weight, (x**2).sum(0), 0.6)).T) ** 2).mean()
    assert (pruned_gpt == 0).float().mean() == pytest.approx(0.6, abs=1 / 64)
    assert err_gpt < 0.8 * err_mag and err_gpt < err_wanda


def test_sparsegpt_lazy_blocks_are_exact() -> None:
    torch.manual_seed(4)
    x = torch.randn(512, 32)
    weight, hessian = torch.randn(8, 32), 2 * x.T @ x / 512
    a = sparsegpt_prune(weight, hessian, 0.0, (2, 4), blocksize=4)
    b = sparsegpt_prune(weight, hessian, 0.0, (2, 4), blocksize=32)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sparsegpt_prune(weight, hessian, 0.0), weight)  # nothing pruned, nothing changed


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_bad_sparsity_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="sparsity"):
        wanda_mask(torch.ones(2, 4), torch.ones(4), bad)
    with pytest.raises(ValueError, match="sparsity"):
        owl_sparsities([1.0, 2.0], bad, 0.08)


def test_bad_m_and_pattern_are_refused() -> None:
    with pytest.raises(ValueError, match="M"):
        outlier_ratio([torch.ones(3)], 0.0)
    with pytest.raises(ValueError, match="N:M"):
        parse_sparsity_type("4:2")
    with pytest.raises(ValueError, match="unstructured"):
        parse_sparsity_type("half")
    assert parse_sparsity_type("2:4") == (2, 4)


def test_owl_nm_with_the_official_lambda_varies_n_and_small_lambda_is_uniform() -> None:
    ratios = np.linspace(0.5, 4.0, 8)
    counts = owl_nm_counts(ratios, 5, 8, 2.0)  # the official command: 5:8, lambda 2
    # d = 0 .. 2 in steps of 2/7, centred (mean 1), rounded: -1 -1 0 0 0 0 1 1 -> N = 6 6 5 5 5 5 4 4
    assert list(counts) == [6, 6, 5, 5, 5, 5, 4, 4]
    assert list(owl_nm_counts(ratios, 5, 8, 0.4)) == [5] * 8  # below 0.5 every offset rounds to 0
    with pytest.raises(ValueError, match="lower lambda"):
        owl_nm_counts(ratios, 2, 4, 3.9)  # N would reach 4 (the whole group) or go below 0
    with pytest.raises(ValueError, match="owl_lambda"):
        owl_nm_counts(ratios, 2, 4, 4.0)


def test_stable_tie_break_prunes_the_lowest_indices_among_ties() -> None:
    weight = torch.ones(3, 8)
    mask = wanda_mask(weight, torch.ones(8), 0.5, tie_break="stable")
    assert torch.equal(mask, torch.tensor([[True] * 4 + [False] * 4] * 3))
    assert magnitude_mask(weight, 0.25, tie_break="stable").flatten().nonzero().flatten().tolist() == list(range(6))
    topk = wanda_mask(weight, torch.ones(8), 0.5, tie_break="topk")
    assert (topk.sum(1) == 4).all()  # same count; which ties go is torch.topk's choice
    with pytest.raises(ValueError, match="tie_break"):
        wanda_mask(weight, torch.ones(8), 0.5, tie_break="random")
