"""The 2-D Gaussian-mixture teacher with an exact denoiser, and distances / mode statistics against the truth."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.data.toy2d import GaussianMixture2D
from shared.metrics import energy_distance, mmd_rbf


class MixtureDenoiser(nn.Module):
    """Exact E[x0 | x_sigma] of an isotropic Gaussian mixture; labels pick one component, label K means 'none'.

    With v = s^2 + sigma^2 each noisy component is N(mu_k, v I); E[x0 | x, k] = (s^2 x + sigma^2 mu_k) / v and the
    unconditional denoiser averages it with the posterior responsibilities (Tweedie: score = (D - x) / sigma^2).
    """

    def __init__(self, mixture: GaussianMixture2D) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(mixture.means, dtype=torch.float64))
        self.register_buffer("log_weights", torch.tensor(np.log(mixture.weights), dtype=torch.float64))
        self.std = float(mixture.std)
        self.num_classes = len(mixture.weights)

    def responsibilities(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        var = self.std**2 + sigma.reshape(-1, 1).double() ** 2
        d2 = ((x.double()[:, None, :] - self.means[None]) ** 2).sum(-1)
        return torch.softmax(self.log_weights[None] - d2 / (2 * var), 1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(len(x))
        resp = self.responsibilities(x, sigma)
        if labels is not None:
            onehot = nn.functional.one_hot(labels.clamp(max=self.num_classes - 1), self.num_classes).double()
            resp = torch.where((labels < self.num_classes)[:, None], onehot, resp)
        var = (self.std**2 + sigma**2)[:, None]
        posterior_mean = resp @ self.means  # sum_k r_k mu_k
        out = (self.std**2 * x.double() + sigma[:, None] ** 2 * posterior_mean) / var
        return out.to(x.dtype)

    def log_density(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """log p_sigma(x) of the noised mixture (for checking the score by autograd)."""
        var = self.std**2 + sigma**2
        d2 = ((x.double()[:, None, :] - self.means[None]) ** 2).sum(-1)
        return torch.logsumexp(self.log_weights[None] - d2 / (2 * var), 1) - torch.log(torch.tensor(2 * torch.pi * var))

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2."""
        return (self(x.double(), torch.tensor(sigma)) - x.double()) / sigma**2


def sample_statistics(samples: np.ndarray, reference: np.ndarray, mixture: GaussianMixture2D,
                      labels: np.ndarray | None = None) -> dict[str, float]:
    """Energy distance and MMD to true samples, modes covered, fraction near a mode; class accuracy, within-class
    spread (sample std around the true mode over the true std) and within-class diversity (std around the class's
    own sample mean over the true std: spread without the shift) when samples carry their class."""
    samples = np.asarray(samples, dtype=np.float64)
    d = np.sqrt(((samples[:, None, :] - mixture.means[None]) ** 2).sum(-1))
    nearest = d.argmin(1)
    near = d.min(1) < 3 * mixture.std
    k = len(mixture.weights)
    counts = np.bincount(nearest[near], minlength=k)
    expected = len(samples) * mixture.weights
    stats = {
        "energy_distance": energy_distance(samples, reference),
        "mmd": mmd_rbf(samples, reference),
        "modes_covered": int((counts >= 0.25 * expected).sum()),
        "num_modes": k,
        "near_mode_fraction": float(near.mean()),
    }
    if labels is not None:
        stats["class_accuracy"] = float((nearest == labels).mean())
        spreads = [np.sqrt(((samples[labels == c] - mixture.means[c]) ** 2).sum(1).mean() / 2)
                   for c in range(k) if (labels == c).sum() > 1]
        stats["within_class_std_ratio"] = float(np.mean(spreads) / mixture.std)
        own = [np.sqrt(samples[labels == c].var(0).sum() / 2) for c in range(k) if (labels == c).sum() > 1]
        stats["within_class_diversity"] = float(np.mean(own) / mixture.std)  # spread around the class's own mean
    return stats
