"""EDM (Karras et al. 2022): preconditioned denoiser, its training loss and the deterministic Heun sampler."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0


def precond_coeffs(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """c_skip, c_out, c_in, c_noise of EDM (Karras et al. 2022, Table 1)."""
    var = sigma**2 + sigma_data**2
    return sigma_data**2 / var, sigma * sigma_data / var.sqrt(), 1 / var.sqrt(), sigma.log() / 4


class PrecondDenoiser(nn.Module):
    """D(x, sigma, y) = c_skip x + c_out F(c_in x, c_noise, y) around a raw network F (Karras et al. 2022, eq. 7)."""

    def __init__(self, net: nn.Module, sigma_data: float) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None,
                with_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The denoised x; with_logits also returns the raw network's encoder logits (the Diffusion-GAN head)."""
        sigma = _per_sample(sigma, x)
        c_skip, c_out, c_in, c_noise = precond_coeffs(sigma, self.sigma_data)
        if not with_logits:
            return c_skip * x + c_out * self.net(c_in * x, c_noise.flatten(), labels)
        out, logits = self.net(c_in * x, c_noise.flatten(), labels, with_logits=True)
        return c_skip * x + c_out * out, logits


def _per_sample(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """sigma broadcast to shape (N, 1, ..., 1) for a batch x."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).expand(len(x), *([1] * (x.ndim - 1)))


def sample_training_sigma(n: int, gen: torch.Generator | None = None, p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    """ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, Table 1)."""
    return (p_mean + p_std * torch.randn(n, generator=gen)).exp()


def training_noise(x0: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma (shape (N, 1, ..., 1), ln sigma ~ N(-1.2, 1.2^2)) and standard normal noise for x0."""
    sigma = _per_sample(sample_training_sigma(len(x0), gen).to(x0), x0)
    return sigma, torch.randn(x0.shape, generator=gen).to(x0)


def weighted_denoising_error(denoised: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Per-sample lambda(sigma) ||D - x0||^2 summed over coordinates, lambda = (sigma^2 + sd^2) / (sigma sd)^2."""
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    return (weight * (denoised - x0) ** 2).flatten(1).sum(1)


def denoising_loss(denoiser: Denoiser, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
    """Batch mean of lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2 (EDM eq. 2 with the weighting of eq. 8) for given
    per-sample sigma (any shape with N elements) and noise n."""
    sigma = _per_sample(sigma.reshape(-1), x0)
    noise = noise.to(x0)
    return weighted_denoising_error(denoiser(x0 + sigma * noise, sigma, labels), x0, sigma, sigma_data).mean()


def edm_loss(denoiser: Denoiser, x0: torch.Tensor, sigma_data: float, labels: torch.Tensor | None = None,
             gen: torch.Generator | None = None) -> torch.Tensor:
    """:func:`denoising_loss` with sigma and noise drawn from ``gen`` (:func:`training_noise`)."""
    sigma, noise = training_noise(x0, gen)
    return denoising_loss(denoiser, x0, sigma, noise, sigma_data, labels)


def karras_sigmas(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO) -> torch.Tensor:
    """sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0 (EDM eq. 5)."""
    i = torch.arange(steps, dtype=torch.float64)
    sig = (sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def heun_sample(denoiser: Denoiser, noise: torch.Tensor, labels: torch.Tensor | None = None, steps: int = 18) -> torch.Tensor:
    """Deterministic 2nd-order Heun sampler (EDM Algorithm 1, no churn): 2 * steps - 1 denoiser evaluations."""
    sigmas = karras_sigmas(steps).tolist()
    x = noise * sigmas[0]
    for cur, nxt in itertools.pairwise(sigmas):
        d = (x - denoiser(x, torch.tensor(cur), labels)) / cur
        x_next = x + (nxt - cur) * d
        if nxt > 0:
            d_next = (x_next - denoiser(x_next, torch.tensor(nxt), labels)) / nxt
            x_next = x + (nxt - cur) * 0.5 * (d + d_next)
        x = x_next
    return x


def heun_evaluations(steps: int) -> int:
    return 2 * steps - 1


def ema_beta(batch_size: int, halflife_kimg: float, images_seen: int | None = None, rampup_ratio: float = 0.0) -> float:
    """EMA decay per update for a half-life in thousands of samples, capped at rampup_ratio * images seen before this
    update (EDM / SiD training loops, ema_rampup_ratio): the first update copies the network."""
    halflife = halflife_kimg * 1000
    if halflife <= 0:
        return 0.0
    if rampup_ratio > 0 and images_seen is not None:
        halflife = min(halflife, images_seen * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """ema <- beta ema + (1 - beta) net, parameter by parameter."""
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p, 1 - beta)


def timestep_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the scalar noise conditioning."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / half)
    args = c_noise[:, None].float() * 100 * freqs[None]  # c_noise = ln(sigma)/4 spans ~[-1.6, 1.1]
    return torch.cat([args.cos(), args.sin()], 1)
