"""The VP-SDE of U-ViT/DeeDiff, the training losses (baseline and DeeDiff's) and the two samplers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# model_fn(x_t, t_net, y) -> (noise prediction, layers executed per sample)
ModelFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]


class VPSDE:
    """dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear in t in [0, 1] (Song et al. 2021; U-ViT's sde.py)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def cum_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar(t) = exp(-int_0^t beta), so x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps."""
        return torch.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a = self.cum_alpha(t).view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def net_time(t: torch.Tensor) -> torch.Tensor:
    """The network sees t * 999, as in U-ViT's ScoreModel.predict."""
    return t * 999


def mean_sq(x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of squares, shape (B,) (U-ViT's ``mos``)."""
    return x.pow(2).flatten(1).mean(1)


def baseline_loss(pred: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """L_simple = ||eps - eps_theta(x_t, t)||^2 (DeeDiff Eq. 2, DDPM's objective)."""
    return mean_sq(noise - pred).mean()


def uncertainty_target(pred: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Certainty target 1 - tanh(|eps_i - eps|) per pixel, no gradient (Sec. 3.2 / official mos_lte)."""
    return (1 - torch.tanh((pred - noise).abs())).detach()


def layer_weights(certainties: list[torch.Tensor]) -> torch.Tensor:
    """w_i = batch-mean certainty of layer i, normalised to sum to one over layers (Sec. 3.3, eq. for L_UAL).

    Not detached, as in the official code: the weights also train the UEMs.
    """
    raw = torch.stack([c.mean() for c in certainties])
    return raw / raw.sum()


def deediff_losses(
    preds: list[torch.Tensor], certainties: list[torch.Tensor], noise: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The three DeeDiff terms (Sec. 3.3): L_simple of the last exit, L_u (UEM regression), L_UAL (layer-wise)."""
    simple = mean_sq(noise - preds[-1]).mean()
    uem = torch.stack([mean_sq(c - uncertainty_target(p, noise)).mean() for p, c in zip(preds, certainties)]).mean()
    weights = layer_weights(certainties)
    layerwise = (weights * torch.stack([mean_sq(noise - p).mean() for p in preds])).sum()
    return {"simple": simple, "uem": uem, "layerwise": layerwise, "weights": weights.detach()}


def _expand(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (x.dim() - 1)))


@torch.no_grad()
def sample(
    sde: VPSDE,
    model_fn: ModelFn,
    x_init: torch.Tensor,
    y: torch.Tensor | None,
    steps: int,
    method: str,
    generator: torch.Generator | None = None,
    eps: float = 1e-3,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Run a reverse-time sampler from x_init ~ N(0, I) at t = 1.

    ``euler_maruyama``: the reverse SDE dx = [f - g^2 score] dt + g dw on U-ViT's grid [0, linspace(eps, 1, N)]
    (the paper's CIFAR-10 sampler with N = 1000). ``ddim``: the deterministic DDIM update on linspace(1, eps, N),
    ending at t = 0, with x0 clipped to [-1, 1]: a faster sampler for CPU runs.
    Returns (x_0, layers executed (steps, B), t per step).
    """
    x = x_init
    depths, times = [], []
    if method == "euler_maruyama":
        grid = torch.cat([torch.zeros(1), torch.linspace(eps, 1.0, steps)]).double()
        for k in range(steps, 0, -1):
            t, s = grid[k], grid[k - 1]
            tb = torch.full((x.shape[0],), float(t), device=x.device)
            pred, depth = model_fn(x, net_time(tb), y)
            score = -pred / (1 - sde.cum_alpha(tb)).sqrt().view(-1, 1, 1, 1)
            beta = sde.beta(tb).view(-1, 1, 1, 1)
            dt = float(s - t)
            x = x + (-0.5 * beta * x - beta * score) * dt
            if k > 1:
                noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
                x = x + beta.sqrt() * (-dt) ** 0.5 * noise
            depths.append(depth.cpu().numpy())
            times.append(float(t))
    elif method == "ddim":
        grid = torch.cat([torch.linspace(1.0, eps, steps), torch.zeros(1)]).double()
        for k in range(steps):
            t, s = grid[k], grid[k + 1]
            tb = torch.full((x.shape[0],), float(t), device=x.device)
            pred, depth = model_fn(x, net_time(tb), y)
            a_t = _expand(sde.cum_alpha(tb), x)
            a_s = float(sde.cum_alpha(s.float()))
            x0 = ((x - (1 - a_t).sqrt() * pred) / a_t.sqrt()).clamp(-1.0, 1.0)  # data lie in [-1, 1]
            eps_hat = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # the noise consistent with the clipped x0
            x = a_s**0.5 * x0 + (1 - a_s) ** 0.5 * eps_hat
            depths.append(depth.cpu().numpy())
            times.append(float(t))
    else:
        raise ValueError(f"unknown sampler {method!r}; choose euler_maruyama or ddim")
    return x, np.stack(depths), np.asarray(times)
