"""The linear schedule, the forward process's mean and variance, and the denoiser's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.meddiffusion.diffusion import DiffusionAugmenter, VisitUNet, linear_betas, q_sample


def test_linear_schedule_matches_numpy() -> None:
    betas = linear_betas(1000, 1e-4, 0.02)
    np.testing.assert_allclose(betas.numpy(), np.linspace(1e-4, 0.02, 1000))
    with pytest.raises(ValueError):
        linear_betas(10, 0.1, 0.01)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_forward_process_mean_and_variance(t: int) -> None:
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t]
    alphas_cumprod = torch.cumprod(1 - linear_betas(1000, 1e-4, 0.02), 0)
    x0 = torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64).expand(200_000, 3)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    xt = q_sample(x0, torch.full((x0.shape[0],), t), noise, alphas_cumprod).numpy()
    np.testing.assert_allclose(xt.mean(0), np.sqrt(abar) * np.array([1.5, -2.0, 0.0]), atol=0.01)
    np.testing.assert_allclose(xt.var(0), 1 - abar, rtol=0.02, atol=2e-4)


def test_unet_shape_and_odd_length_error() -> None:
    net = VisitUNet(embed_dim=12, channels=16)
    out = net(torch.randn(3, 8, 12), torch.tensor([0, 5, 999]))
    assert out.shape == (3, 8, 12)
    with pytest.raises(ValueError, match="even"):
        net(torch.randn(3, 7, 12), torch.tensor([0, 5, 999]))


def test_synthetic_sequence_is_e_bar_plus_noise_residual() -> None:
    torch.manual_seed(0)
    aug = DiffusionAugmenter(8, 8, steps=100, beta_start=1e-4, beta_end=0.02)
    e_bar = torch.randn(4, 6, 8)
    torch.manual_seed(0)
    e_hat, noise, eps_hat = aug.sample(e_bar)
    torch.testing.assert_close(e_hat, e_bar + noise - eps_hat)
    torch.manual_seed(1)
    again = aug.sample(e_bar)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(aug.sample(e_bar)[0], e_hat)  # determined by the seed
    assert not torch.allclose(again, e_hat)
    _, terms = aug(e_bar, torch.tensor([6, 1, 3, 2]))
    assert set(terms) == {"mse_noise"} and terms["mse_noise"].dim() == 0
