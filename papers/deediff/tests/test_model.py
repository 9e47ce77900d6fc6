"""U-ViT pieces, the early-exit rule (first qualifying layer, patience) and FLOPs per exit depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers.deediff.config import Config
from papers.deediff.model import UViT, patchify, timestep_embedding, unpatchify
from papers.deediff.sweep import flop_table
from shared.accel import count_flops

TINY = dict(image_size=8, patch_size=2, embed_dim=16, depth=6, num_heads=2, num_classes=3)  # 7 layers, half = 3


def tiny_model(seed: int = 0, **overrides) -> tuple[UViT, Config]:
    torch.manual_seed(seed)
    cfg = Config(**{**TINY, **overrides})
    return UViT(cfg).eval(), cfg


def test_patchify_roundtrip_and_layout() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 4, 12)
    # token 1 is the top-right 2x2 patch; its features run (p1, p2, C) with C fastest (U-ViT's einops layout)
    expected = np.stack([x[0, :, 0:2, 2:4].numpy()[:, i, j] for i in range(2) for j in range(2)]).reshape(-1)
    np.testing.assert_array_equal(tokens[0, 1].numpy(), expected)
    torch.testing.assert_close(unpatchify(tokens, 3), x)


def test_timestep_embedding_matches_numpy() -> None:
    t = torch.tensor([0.0, 3.5, 999.0])
    dim = 6
    freqs = np.exp(-math.log(10000) * np.arange(3) / 3)
    expected = np.concatenate([np.cos(t.numpy()[:, None] * freqs), np.sin(t.numpy()[:, None] * freqs)], axis=1)
    np.testing.assert_allclose(timestep_embedding(t, dim).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("timestep_aware", [False, True])
def test_shapes_and_dtypes(timestep_aware: bool) -> None:
    model, cfg = tiny_model(uem_timestep_aware=timestep_aware)
    x, t, y = torch.randn(5, 1, 8, 8), torch.rand(5) * 999, torch.randint(0, 3, (5,))
    assert model(x, t, y).shape == (5, 1, 8, 8)
    preds, certs = model.forward_all_exits(x, t, y)
    assert len(preds) == len(certs) == cfg.n_layers == 7
    assert all(p.shape == (5, 1, 8, 8) and p.dtype == torch.float32 for p in preds)
    assert all(c.shape == (5, 1, 8, 8) and ((c > 0) & (c < 1)).all() for c in certs)
    torch.testing.assert_close(preds[-1], model(x, t, y))
    out, depth = model.forward_early_exit(x, t, y, threshold=0.5)
    assert out.shape == x.shape and depth.dtype == torch.long and depth.shape == (5,)


def test_timestep_aware_uem_reads_t() -> None:
    model, _ = tiny_model(uem_timestep_aware=True)
    x, y = torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)
    tokens, temb = model.embed(x, torch.tensor([10.0, 10.0]), y)
    _, temb_other = model.embed(x, torch.tensor([900.0, 900.0]), y)
    assert not torch.allclose(model.certainty(0, tokens, temb), model.certainty(0, tokens, temb_other))
    plain, _ = tiny_model()
    tokens, temb = plain.embed(x, torch.tensor([10.0, 10.0]), y)
    torch.testing.assert_close(plain.certainty(0, tokens, temb), plain.certainty(0, tokens, temb * 5))


def reference_exit_depth(cert: np.ndarray, threshold: float, half: int, patience: int) -> int:
    """The rule written out independently: first half needs `patience` passing layers (not necessarily
    consecutive), later layers exit on their first pass, the last layer always exits."""
    passes = 0
    for i, c in enumerate(cert):
        if i == len(cert) - 1:
            return i + 1
        if c > threshold:
            if i < half:
                passes += 1
                if passes >= patience:
                    return i + 1
            else:
                return i + 1
    raise AssertionError("unreachable")


def force_certainties(model: UViT, table: np.ndarray, t: torch.Tensor, y: torch.Tensor) -> None:
    """Make layer i of sample b report the mean certainty table[b, i]; samples are told apart by their time
    embedding, which forward_early_exit narrows to the samples still running."""
    _, temb_all = model.embed(torch.zeros(len(t), 1, 8, 8), t, y)

    def certainty(index: int, tokens: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        ids = torch.cdist(time_emb, temb_all).argmin(1)
        return torch.as_tensor(table[ids.numpy(), index], dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)

    model.certainty = certainty


def test_exit_rule_on_hand_worked_certainties() -> None:
    model, _ = tiny_model()
    lo, hi = 0.1, 0.95
    table = np.array([
        [hi, lo, hi, lo, lo, lo, lo],  # two first-half passes, not consecutive -> exits at layer 3
        [lo, lo, lo, hi, lo, lo, lo],  # mid-block passes -> exits at once at layer 4
        [hi, lo, lo, lo, lo, lo, lo],  # a single first-half pass is not enough -> runs all 7 layers
        [lo, lo, hi, lo, lo, hi, hi],  # one first-half pass, then out-block 6 passes -> 6
        [hi, hi, hi, hi, hi, hi, hi],  # patience: the second layer, not the first -> 2
        [lo, lo, lo, lo, lo, lo, lo],  # never passes -> full depth
    ])
    t, y = torch.linspace(50, 950, len(table)), torch.zeros(len(table), dtype=torch.long)
    force_certainties(model, table, t, y)
    x = torch.randn(len(table), 1, 8, 8)
    _, depth = model.forward_early_exit(x, t, y, threshold=0.9, patience=2)
    assert depth.tolist() == [3, 4, 7, 6, 2, 7]
    assert depth.tolist() == [reference_exit_depth(row, 0.9, 3, 2) for row in table]
    _, depth = model.forward_early_exit(x, t, y, threshold=0.9, patience=1)
    assert depth.tolist() == [1, 4, 1, 3, 1, 7]


def test_early_exit_matches_per_layer_outputs_of_a_real_model() -> None:
    model, cfg = tiny_model(seed=3)
    with torch.no_grad():
        for uem in model.uems:  # spread certainties so that samples leave at many different depths
            uem.linear.weight.normal_(0, 0.6)
            uem.linear.bias.normal_(0, 0.5)
    x, t, y = torch.randn(64, 1, 8, 8), torch.rand(64) * 999, torch.randint(0, 3, (64,))
    with torch.no_grad():
        preds, certs = model.forward_all_exits(x, t, y)
    means = torch.stack([c.flatten(1).mean(1) for c in certs], 1).numpy()
    threshold = float(np.median(means))
    out, depth = model.forward_early_exit(x, t, y, threshold, patience=2)
    expected = [reference_exit_depth(row, threshold, cfg.depth // 2, 2) for row in means]
    assert depth.tolist() == expected
    assert len(set(expected)) >= 3, "the test should exercise several exit depths"
    stacked = torch.stack(preds)  # (L, B, ...)
    torch.testing.assert_close(out, stacked[depth - 1, torch.arange(64)], rtol=1e-4, atol=1e-5)


def test_unreachable_threshold_gives_the_full_model() -> None:
    model, cfg = tiny_model(seed=1)
    x, t, y = torch.randn(6, 1, 8, 8), torch.rand(6) * 999, torch.randint(0, 3, (6,))
    out, depth = model.forward_early_exit(x, t, y, threshold=1.0)
    assert (depth == cfg.n_layers).all()
    torch.testing.assert_close(out, model(x, t, y).detach(), rtol=1e-5, atol=1e-6)


def test_flops_fall_in_proportion_to_layers() -> None:
    model, cfg = tiny_model()
    table = flop_table(model, cfg)
    steps = np.diff(table.static)
    half = cfg.depth // 2
    assert (steps > 0).all()
    assert len(set(steps[: half].tolist())) == 1, "in-blocks and the mid-block cost the same"
    assert len(set(steps[half:].tolist())) == 1, "out-blocks cost the same"
    n_tokens = 1 + 1 + (cfg.image_size // cfg.patch_size) ** 2  # time, label, patches
    assert steps[half] - steps[0] == 2 * n_tokens * (2 * cfg.embed_dim) * cfg.embed_dim  # the skip Linear(2d -> d)
    # independent of the table: FLOPs counted on the early-exit pass itself, at the two extremes
    x, t, y = torch.randn(1, 1, 8, 8), torch.full((1,), 500.0), torch.zeros(1, dtype=torch.long)
    full = count_flops(model.forward_early_exit, x, t, y, 1.0)
    first = count_flops(model.forward_early_exit, x, t, y, 0.0, 1)
    assert full == table.early_exit(np.array([cfg.n_layers]), cfg.n_layers)[0]
    assert first == table.early_exit(np.array([1]), cfg.n_layers)[0]
    assert table.uem == 2 * (n_tokens - 2) * cfg.embed_dim * cfg.patch_size**2


def test_without_long_skips_the_out_blocks_have_no_skip_linear() -> None:
    model, _ = tiny_model(long_skip=False)
    assert all(b.skip_linear is None for b in model.out_blocks)
    assert all(b.skip_linear is not None for b in tiny_model()[0].out_blocks)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        out = model(x, torch.tensor([1.0, 500.0]), torch.tensor([0, 2]))
    assert out.shape == x.shape and torch.isfinite(out).all()
