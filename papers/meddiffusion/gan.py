"""The medGAN-style augmentation baseline (Choi et al. 2017, as the official code's ``models/ALL_GAN.py::medGAN``
applies it to visit embeddings): an autoencoder d -> d/2 -> d/4 -> d/2 -> d, a residual generator that maps noise
to the autoencoder's latent space, and a linear discriminator on decoded visits. The decoded fake sequence is the
synthetic patient; it takes the real patient's label and lengths, as in the official code.

All three losses are returned as terms of ONE objective, so a single optimizer step trains everything at once
(simultaneous gradient steps): the discriminator term sees detached inputs (it trains only the discriminator) and
the generator term goes through a detached copy of the discriminator's weights (it trains only the generator and
decoder).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from papers.meddiffusion.masks import masked_mse, valid_mask, visit_count


class ResidualGenerator(nn.Module):
    """z -> z1 = z + ReLU(BN(W1 z)) -> z1 + ReLU(BN(W2 z1)); batch norm over the visit axis (official
    ``Linear_generator``)."""

    def __init__(self, dim: int, max_visits: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.BatchNorm1d(max_visits), nn.BatchNorm1d(max_visits)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z1 = z + torch.relu(self.norm1(self.linear1(z)))
        return z1 + torch.relu(self.norm2(self.linear2(z1)))


def _masked_bce(logits: torch.Tensor, target: float, mask: torch.Tensor, mean_visits: torch.Tensor | None) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")
    return (loss * mask).sum() / visit_count(mask, mean_visits)


class MedGANAugmenter(nn.Module):
    """Synthetic visit-embedding sequences from noise, trained adversarially against decoded real visits."""

    def __init__(self, embed_dim: int, max_visits: int, dropout: float = 0.1) -> None:
        super().__init__()
        half, latent = max(embed_dim // 2, 1), max(embed_dim // 4, 1)
        self.latent = latent
        self.encoder = nn.Sequential(nn.Linear(embed_dim, half), nn.Dropout(dropout), nn.ReLU(),
                                     nn.Linear(half, latent), nn.Dropout(dropout), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(latent, half), nn.ReLU(), nn.Linear(half, embed_dim))
        self.generator = ResidualGenerator(latent, max_visits)
        self.discriminator = nn.Linear(embed_dim, 1)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The generator's input noise for a batch of embedded sequences of ``shape`` (N, T, D)."""
        return {"z": torch.randn(*shape[:2], self.latent, generator=generator)}

    def forward(self, e: torch.Tensor, lengths: torch.Tensor, draws: dict[str, torch.Tensor] | None = None,
                mean_visits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The synthetic sequence and the terms gan_reconstruction (autoencoder MSE, medGAN's pre-training loss),
        gan_generator (-log D(fake)) and gan_discriminator ((-log D(real) - log(1 - D(fake))) / 2), all over
        real visits."""
        mask = valid_mask(lengths, e.shape[1]).unsqueeze(-1).to(e.dtype)
        target = e.detach()  # the autoencoder learns the predictor's embeddings without pulling on them
        decoded_real = self.decoder(self.encoder(target))
        z = (draws or self.draw(tuple(e.shape)))["z"].to(e.device, e.dtype)
        fake = self.decoder(self.generator(z))
        frozen_d = F.linear(fake, self.discriminator.weight.detach(), self.discriminator.bias.detach())
        d_loss = (_masked_bce(self.discriminator(decoded_real.detach()), 1.0, mask, mean_visits)
                  + _masked_bce(self.discriminator(fake.detach()), 0.0, mask, mean_visits)) / 2
        return fake, {"gan_reconstruction": masked_mse(decoded_real, target, lengths, mean_visits),
                      "gan_generator": _masked_bce(frozen_d, 1.0, mask, mean_visits), "gan_discriminator": d_loss}
