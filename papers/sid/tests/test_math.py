"""SiD and EDM math against values computed independently by hand or with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.sid.edm import heun_evaluations, heun_sample, karras_sigmas, precond_coeffs
from papers.sid.mixture import MixtureDenoiser, sample_statistics
from papers.sid.sid import (
    generator_sigma_range,
    guided,
    sample_generator_sigma,
    sid_generator_loss,
    step_sigmas,
)
from shared.data.toy2d import GaussianMixture2D, ring


def test_generator_loss_matches_hand_computation() -> None:
    f_real = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    f_fake = torch.tensor([[0.0, 1.0], [1.0, -1.0]])
    x_g = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    # sample 1: diff (1, 1), f_real - x_g (-1, 2), w = (1 + 2) / 2 = 1.5:  (1*(-1 - 1.2) + 1*(2 - 1.2)) / 1.5
    # sample 2: diff (-0.5, 0), f_real - x_g (0.5, -1), w = (0.5 + 1) / 2 = 0.75: (-0.5*(0.5 + 0.6)) / 0.75
    expected = [(-2.2 + 0.8) / 1.5, (-0.5 * 1.1) / 0.75]
    np.testing.assert_allclose(sid_generator_loss(f_real, f_fake, x_g, 1.2).numpy(), expected, rtol=1e-6)


def test_generator_loss_alpha_zero_is_l2_over_w() -> None:
    rng = np.random.default_rng(0)
    fr, ff, xg = (rng.normal(size=(4, 3)) for _ in range(3))
    w = np.abs(xg - fr).mean(1)
    expected = ((fr - ff) * (fr - xg)).sum(1) / w
    got = sid_generator_loss(*(torch.from_numpy(a) for a in (fr, ff, xg)), alpha=0.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_w_carries_no_gradient() -> None:
    """With f_real, f_fake fixed, d loss / d x_g = -(f_real - f_fake) / w exactly: no term from w's dependence."""
    rng = np.random.default_rng(1)
    f_real, f_fake = torch.from_numpy(rng.normal(size=(3, 5))), torch.from_numpy(rng.normal(size=(3, 5)))
    x_g = torch.from_numpy(rng.normal(size=(3, 5))).requires_grad_(True)
    sid_generator_loss(f_real, f_fake, x_g, 1.2).sum().backward()
    w = (x_g.detach() - f_real).abs().mean(1, keepdim=True)
    torch.testing.assert_close(x_g.grad, -(f_real - f_fake) / w)


def test_generator_noise_sampler_range() -> None:
    sigma = sample_generator_sigma(100_000, tmax=800, gen=torch.Generator().manual_seed(0))
    hi = (0.2 * 0.002 ** (1 / 7) + 0.8 * 80 ** (1 / 7)) ** 7  # t = 0.8 by hand
    lo_range, hi_range = generator_sigma_range(800)
    assert hi_range == pytest.approx(hi) and lo_range == 0.002
    assert sigma.min() >= 0.002 - 1e-9 and sigma.max() <= hi + 1e-6
    assert sigma.max() > 0.95 * hi and sigma.min() < 0.003
    assert 24 < hi < 25  # ~24.4, as read from the official code


def test_precond_coefficients_by_hand() -> None:
    c_skip, c_out, c_in, c_noise = precond_coeffs(torch.tensor(1.0), 0.5)
    assert float(c_skip) == pytest.approx(0.25 / 1.25)
    assert float(c_out) == pytest.approx(0.5 / np.sqrt(1.25))
    assert float(c_in) == pytest.approx(1 / np.sqrt(1.25))
    assert float(c_noise) == pytest.approx(0.0)
    assert float(precond_coeffs(torch.tensor(np.e**4), 0.5)[3]) == pytest.approx(1.0)


def test_karras_sigmas_and_heun_evaluation_count() -> None:
    s = karras_sigmas(18).numpy()
    assert s.shape == (19,) and s[0] == pytest.approx(80) and s[17] == pytest.approx(0.002) and s[18] == 0
    assert np.all(np.diff(s) < 0)
    calls = []

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        calls.append(1)
        return torch.zeros_like(x)

    heun_sample(denoiser, torch.randn(4, 2), steps=18)
    assert len(calls) == heun_evaluations(18) == 35


def test_mixture_score_equals_autograd_of_log_density() -> None:
    teacher = MixtureDenoiser(ring(8, 2.0, 0.1))
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    for sigma in (0.05, 0.7, 5.0):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(teacher.log_density(xr, sigma).sum(), xr)
        torch.testing.assert_close(teacher.score(x, sigma), grad)


def test_mixture_log_density_matches_shared_log_prob_at_sigma_zero() -> None:
    mixture = ring(8, 2.0, 0.1)
    x = mixture.sample(50, seed=3)[0]
    ours = MixtureDenoiser(mixture).log_density(torch.from_numpy(x), 0.0).numpy()
    np.testing.assert_allclose(ours, mixture.log_prob(x), rtol=1e-5, atol=1e-5)


def test_conditional_mixture_denoiser_is_component_posterior_mean() -> None:
    mixture = ring(8, 2.0, 0.1)
    teacher = MixtureDenoiser(mixture)
    x, sigma = torch.tensor([[0.3, -0.2]]), 0.5
    out = teacher(x, torch.tensor(sigma), torch.tensor([3]))
    expected = (0.01 * x.numpy() + 0.25 * mixture.means[3]) / (0.01 + 0.25)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)
    null = teacher(x, torch.tensor(sigma), torch.tensor([8]))  # label K = unconditional
    torch.testing.assert_close(null, teacher(x, torch.tensor(sigma)))


def test_heun_with_exact_gaussian_teacher_follows_the_exact_ode() -> None:
    """For N(mu, s^2) the probability-flow ODE is x_sigma = mu + sqrt(s^2 + sigma^2) z: Heun must land near mu + s z."""
    gauss = GaussianMixture2D(means=np.array([[1.0, -0.5]]), std=0.3, weights=np.array([1.0]))
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = np.array([1.0, -0.5]) + 0.3 * 80 / np.sqrt(0.09 + 80**2) * z.numpy()
    fine = heun_sample(MixtureDenoiser(gauss), z, steps=128).numpy()
    np.testing.assert_allclose(fine, exact, atol=0.01)
    coarse = heun_sample(MixtureDenoiser(gauss), z, steps=18).numpy()  # 35 NFE: small discretisation error
    assert np.abs(coarse - exact).mean() < 0.03


def test_guidance_scales() -> None:
    def denoiser(x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return x + (labels != 3).float()[:, None] * 10  # conditional +10, null label 3 -> +0

    x, y = torch.zeros(2, 1), torch.tensor([0, 1])
    assert guided(denoiser, x, torch.ones(2), y, 1.0, 3).flatten().tolist() == [10, 10]
    assert guided(denoiser, x, torch.ones(2), y, 0.0, 3).flatten().tolist() == [0, 0]
    assert guided(denoiser, x, torch.ones(2), y, 2.0, 3).flatten().tolist() == [20, 20]
    assert guided(denoiser, x, torch.ones(2), y, -1.0, 3).flatten().tolist() == [-10, -10]


def test_few_step_sigmas() -> None:
    assert step_sigmas(2.5, 1) == [2.5]
    assert step_sigmas(2.5, 4) == pytest.approx([2.5, 1.875, 1.25, 0.625])


def test_sample_statistics_on_perfect_and_collapsed_samples() -> None:
    mixture = ring(8, 2.0, 0.1)
    perfect, labels = mixture.sample(1500, seed=0)
    ref = mixture.sample(1500, seed=1)[0]
    good = sample_statistics(perfect, ref, mixture, labels)  # P(|x - mu| < 3 std) in 2-D = 1 - exp(-4.5)
    assert good["modes_covered"] == 8 and abs(good["near_mode_fraction"] - (1 - np.exp(-4.5))) < 0.015 and good["class_accuracy"] > 0.99
    assert good["energy_distance"] < 0.01 and 0.8 < good["within_class_std_ratio"] < 1.2
    shifted = sample_statistics(perfect + 0.5 * mixture.means[labels], ref, mixture, labels)  # pushed 1.0 outward
    assert shifted["within_class_std_ratio"] > 5 and abs(shifted["within_class_diversity"] - good["within_class_diversity"]) < 1e-6
    collapsed = np.repeat(mixture.means[:1], 1500, 0)
    bad = sample_statistics(collapsed, ref, mixture)
    assert bad["modes_covered"] == 1 and bad["energy_distance"] > 0.5
