"""The diffusion part of MedDiffusion (Sec. 3.3): a linear beta schedule, the forward process and a 1-D U-Net denoiser."""

from __future__ import annotations

import math

import torch
from torch import nn

from papers.meddiffusion.masks import masked_mse


def linear_betas(steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """beta_1..beta_T evenly spaced (DDPM's linear schedule, as the official code uses)."""
    if steps < 1 or not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need steps >= 1 and 0 < beta_start <= beta_end < 1, got {steps}, {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (forward process, DDPM Eq. 4; the paper's noising of E_bar)."""
    abar = alphas_cumprod.to(x0.dtype)[t].view(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock1d(nn.Module):
    def __init__(self, channels: int, time_dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, channels), nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.time = nn.Linear(time_dim, channels)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x))) + self.time(temb)[:, :, None]
        return x + self.conv2(nn.functional.silu(self.norm2(h)))


class VisitUNet(nn.Module):
    """Predicts the noise in a noised visit-embedding sequence (B, T, d): a two-level 1-D U-Net over the visit axis.

    T must be even (one down-sampling step). The official code uses a larger 2-D-style UNet with the visits as
    channels; this one treats the embedding as channels so it works for any sequence length.
    """

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.inp = nn.Conv1d(embed_dim, channels, 3, padding=1)
        self.down_block = ResBlock1d(channels, channels)
        self.down = nn.Conv1d(channels, 2 * channels, 4, stride=2, padding=1)
        self.mid_block = ResBlock1d(2 * channels, channels)
        self.up = nn.ConvTranspose1d(2 * channels, channels, 4, stride=2, padding=1)
        self.merge = nn.Conv1d(2 * channels, channels, 1)
        self.up_block = ResBlock1d(channels, channels)
        self.out = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv1d(channels, embed_dim, 3, padding=1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_t.shape[1] % 2:
            raise ValueError(f"VisitUNet needs an even number of visits, got {x_t.shape[1]}")
        temb = self.time_mlp(timestep_embedding(t, self.channels))
        skip = self.down_block(self.inp(x_t.transpose(1, 2)), temb)
        h = self.mid_block(self.down(skip), temb)
        h = self.up_block(self.merge(torch.cat([self.up(h), skip], dim=1)), temb)
        return self.out(h).transpose(1, 2)


class DiffusionAugmenter(nn.Module):
    """Training-time augmentation (Sec. 3.3): noise E_bar at one random t per patient, predict the noise, and return
    the synthetic sequence E_hat = E_bar + (eps - eps_hat) and the noise MSE over real visits (``mse_noise``)."""

    def __init__(self, embed_dim: int, channels: int, steps: int, beta_start: float, beta_end: float) -> None:
        super().__init__()
        self.steps = steps
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - linear_betas(steps, beta_start, beta_end), 0).float())
        self.denoiser = VisitUNet(embed_dim, channels)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One random t per patient and the noise eps for E_bar of ``shape`` (drawn outside the model so that every
        process of a multi-process run draws the same values for the same rows)."""
        return {"t": torch.randint(0, self.steps, shape[:1], generator=generator),
                "noise": torch.randn(shape, generator=generator)}

    def sample(self, e_bar: torch.Tensor, draws: dict[str, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """E_hat, eps and eps_hat for one random t per patient (``draws`` from :meth:`draw`, else fresh ones)."""
        draws = draws or self.draw(tuple(e_bar.shape))
        t, noise = draws["t"].to(e_bar.device), draws["noise"].to(e_bar.device, e_bar.dtype)
        eps_hat = self.denoiser(q_sample(e_bar, t, noise, self.alphas_cumprod), t)
        return e_bar + (noise - eps_hat), noise, eps_hat

    def forward(self, e_bar: torch.Tensor, lengths: torch.Tensor, draws: dict[str, torch.Tensor] | None = None,
                mean_visits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        e_hat, noise, eps_hat = self.sample(e_bar, draws)
        return e_hat, {"mse_noise": masked_mse(eps_hat, noise, lengths, mean_visits)}  # the paper's L_D (noise MSE)
