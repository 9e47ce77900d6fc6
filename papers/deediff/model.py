"""U-ViT (Bao et al. 2023) with DeeDiff's per-layer uncertainty estimation modules and early-exit inference.

Layers are numbered 1..L with L = depth + 1: ``depth // 2`` in-blocks, one mid-block, ``depth // 2`` out-blocks
fed by long skip connections. Every layer can exit through the backbone's own output head (shared by all exits).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from papers.deediff.config import Config


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps, shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p * p * C)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, L, p * p * C) -> (B, C, sqrt(L) * p, sqrt(L) * p); the inverse of :func:`patchify`."""
    b, n, d = tokens.shape
    grid, patch = math.isqrt(n), math.isqrt(d // channels)
    x = tokens.reshape(b, grid, grid, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, grid * patch, grid * patch)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block; out-blocks first fuse the long skip with Linear([x, skip])."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, skip: bool) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UncertaintyModule(nn.Module):
    """DeeDiff's UEM: per-token Linear + sigmoid on detached patch tokens -> a per-pixel certainty map (Sec. 3.2).

    ``timestep_aware`` adds the timestep embedding to the input, u = sigmoid(w^T [L_i, t] + b) as in the paper's
    text; the official code has no t input (the default here).
    """

    def __init__(self, dim: int, patch_dim: int, channels: int, timestep_aware: bool) -> None:
        super().__init__()
        self.channels = channels
        self.timestep_aware = timestep_aware
        self.linear = nn.Linear(2 * dim if timestep_aware else dim, patch_dim)

    def forward(self, patch_tokens: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        x = patch_tokens.detach()
        if self.timestep_aware:
            x = torch.cat([x, time_emb.detach()[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        return unpatchify(torch.sigmoid(self.linear(x)), self.channels)


class UViT(nn.Module):
    """Noise-prediction U-ViT whose every layer has an exit (shared head) and an uncertainty module."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        dim, self.channels, self.patch = cfg.embed_dim, cfg.channels, cfg.patch_size
        self.n_layers, self.half = cfg.depth + 1, cfg.depth // 2
        self.patch_embed = nn.Conv2d(cfg.channels, dim, cfg.patch_size, stride=cfg.patch_size)
        self.time_embed = (
            nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim)) if cfg.mlp_time_embed else nn.Identity()
        )
        self.label_embed = nn.Embedding(cfg.num_classes, dim) if cfg.num_classes > 0 else None
        self.extras = 2 if self.label_embed is not None else 1
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + n_patches, dim))
        self.in_blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio, False) for _ in range(self.half))
        self.mid_block = Block(dim, cfg.num_heads, cfg.mlp_ratio, False)
        self.out_blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio, cfg.long_skip) for _ in range(self.half))
        patch_dim = cfg.patch_size**2 * cfg.channels
        self.norm = nn.LayerNorm(dim)
        self.decoder_pred = nn.Linear(dim, patch_dim)
        self.final_layer = nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1) if cfg.conv_out else nn.Identity()
        self.uems = nn.ModuleList(
            UncertaintyModule(dim, patch_dim, cfg.channels, cfg.uem_timestep_aware) for _ in range(self.n_layers)
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("uems.")]

    # ---- pieces -------------------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [label?, time, patches] + positions, and the time embedding (for a timestep-aware UEM)."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        time_emb = self.time_embed(timestep_embedding(t, tokens.shape[-1]))
        extra = [time_emb[:, None]]
        if self.label_embed is not None:
            if y is None:
                raise ValueError("this U-ViT is class-conditional: pass labels y")
            extra.insert(0, self.label_embed(y)[:, None])
        return torch.cat([*extra, tokens], dim=1) + self.pos_embed, time_emb

    def layer(self, index: int, tokens: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Run layer ``index`` (0-based); in-blocks push onto ``skips``, out-blocks pop from it."""
        if index < self.half:
            tokens = self.in_blocks[index](tokens)
            skips.append(tokens)
            return tokens
        if index == self.half:
            return self.mid_block(tokens)
        return self.out_blocks[index - self.half - 1](tokens, skips.pop())

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """The shared output head: norm, linear decoder, unpatchify, 3x3 conv (U-ViT's own)."""
        x = self.decoder_pred(self.norm(tokens))[:, self.extras :]
        return self.final_layer(unpatchify(x, self.channels))

    def certainty(self, index: int, tokens: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """Per-pixel certainty c = 1 - u of layer ``index``, shape (B, C, H, W)."""
        return self.uems[index](tokens[:, self.extras :], time_emb)

    # ---- forwards -----------------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, n_layers: int | None = None,
        all_exits: bool = False,
    ) -> Any:
        """Noise prediction from the first ``n_layers`` layers (default all: the ordinary U-ViT); ``all_exits``:
        :meth:`forward_all_exits` (so that a DDP wrapper's forward runs the training pass)."""
        if all_exits:
            return self.forward_all_exits(x, t, y)
        n_layers = self.n_layers if n_layers is None else n_layers
        if not 1 <= n_layers <= self.n_layers:
            raise ValueError(f"n_layers must be in [1, {self.n_layers}], got {n_layers}")
        tokens, _ = self.embed(x, t, y)
        skips: list[torch.Tensor] = []
        for i in range(n_layers):
            tokens = self.layer(i, tokens, skips)
        return self.head(tokens)

    def forward_all_exits(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Training pass: every layer's exit prediction and certainty map (the last exit is the full model's)."""
        tokens, time_emb = self.embed(x, t, y)
        skips: list[torch.Tensor] = []
        preds, certainties = [], []
        for i in range(self.n_layers):
            tokens = self.layer(i, tokens, skips)
            preds.append(self.head(tokens))
            certainties.append(self.certainty(i, tokens, time_emb))
        return preds, certainties

    @torch.no_grad()
    def forward_early_exit(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, threshold: float, patience: int = 2
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DeeDiff inference (Sec. 3.4): each sample leaves at the first layer whose mean certainty > threshold.

        In the first half (in-blocks) a sample leaves only at its ``patience``-th passing layer (the official
        rule with patience 2); from the mid-block on, the first passing layer suffices. Exited samples are dropped
        from the batch, so their remaining layers are never computed. Returns (prediction, layers executed (B,)).
        """
        tokens, time_emb = self.embed(x, t, y)
        out = torch.empty_like(x)
        depth_used = torch.full((x.shape[0],), self.n_layers, dtype=torch.long, device=x.device)
        active = torch.arange(x.shape[0], device=x.device)
        triggers = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        skips: list[torch.Tensor] = []
        for i in range(self.n_layers):
            tokens = self.layer(i, tokens, skips)
            if i == self.n_layers - 1:
                out[active] = self.head(tokens)
                break
            passed = self.certainty(i, tokens, time_emb).flatten(1).mean(1) > threshold
            if i < self.half:
                triggers = triggers + passed.long()
                leave = triggers >= patience
            else:
                leave = passed
            if leave.any():
                out[active[leave]] = self.head(tokens[leave])
                depth_used[active[leave]] = i + 1
                stay = ~leave
                if not stay.any():
                    break
                tokens, time_emb, triggers, active = tokens[stay], time_emb[stay], triggers[stay], active[stay]
                skips = [s[stay] for s in skips]
        return out, depth_used
