"""Raw networks F(x, c_noise, y) wrapped by EDM preconditioning: an MLP for 2-D points, a small U-Net for 28x28."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from papers.sid.edm import timestep_embedding


class LabelEmbedding(nn.Module):
    """Class embedding with one extra 'null' row (index num_classes) used for unconditional evaluation."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, labels: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
        if self.table is None:
            return None
        if labels is None:
            labels = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        return self.table(labels)


class MLPNet(nn.Module):
    """Four SiLU layers over [x, time embedding, label embedding] for 2-D points."""

    def __init__(self, dim: int = 2, width: int = 128, num_classes: int = 0) -> None:
        super().__init__()
        self.temb = 32
        self.labels = LabelEmbedding(num_classes, self.temb)
        self.body = nn.Sequential(
            nn.Linear(dim + self.temb, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim),
        )

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None,
                with_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Output; with_logits also the discriminator logit: the last hidden layer (before its SiLU) averaged
        over units, shape (N, 1) (the 2-D analogue of channel pooling at a U-Net bottleneck)."""
        emb = timestep_embedding(c_noise, self.temb)
        label = self.labels(labels, len(x), x.device)
        if label is not None:
            emb = emb + label
        hidden = self.body[:5](torch.cat([x, emb], 1))
        out = self.body[5:](hidden)
        return (out, hidden.mean(1, keepdim=True)) if with_logits else out


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class SmallUNet(nn.Module):
    """A two-level U-Net for (N, 1, 28, 28) images: 28 -> 14 -> 7 and back, FiLM conditioning on noise and label."""

    def __init__(self, width: int = 32, num_classes: int = 0) -> None:
        super().__init__()
        emb = 4 * width
        self.temb = width
        self.emb = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.labels = LabelEmbedding(num_classes, emb)
        c1, c2, c3 = width, 2 * width, 2 * width
        self.inp = nn.Conv2d(1, c1, 3, padding=1)
        self.down1, self.down2 = ResBlock(c1, c1, emb), ResBlock(c2, c2, emb)
        self.pool1, self.pool2 = nn.Conv2d(c1, c2, 3, 2, 1), nn.Conv2d(c2, c3, 3, 2, 1)
        self.mid = ResBlock(c3, c3, emb)
        self.up2, self.up1 = ResBlock(c3 + c2, c2, emb), ResBlock(c2 + c1, c1, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None,
                with_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Output; with_logits also the discriminator logits: the 7x7 bottleneck averaged over channels, shape
        (N, 1, 7, 7) (SiDA's channel pooling at the U-Net bottleneck)."""
        emb = self.emb(timestep_embedding(c_noise, self.temb))
        label = self.labels(labels, len(x), x.device)
        if label is not None:
            emb = emb + label
        h1 = self.down1(self.inp(x), emb)  # 28x28
        h2 = self.down2(self.pool1(h1), emb)  # 14x14
        h = self.mid(self.pool2(h2), emb)  # 7x7
        logits = h.mean(1, keepdim=True)
        h = self.up2(torch.cat([F.interpolate(h, size=h2.shape[-2:]), h2], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, size=h1.shape[-2:]), h1], 1), emb)
        return (self.out(h), logits) if with_logits else self.out(h)
