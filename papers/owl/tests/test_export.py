"""Compressed saving (values + bit mask; 2:4 as values + 2-bit positions) round-trips exactly and is smaller."""

from pathlib import Path

import torch

from papers.owl.export import is_two_four, load_pruned, pack_two_four, save_pruned, unpack_two_four
from papers.owl.models import tiny_model
from papers.owl.pruners import nm_mask
from papers.owl.sequential import block_linears, find_decoder_blocks, model_sparsity


def test_two_four_layout_round_trips() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 16)
    w[nm_mask(w.abs(), 2, 4)] = 0
    w[0, :4] = 0  # a group with more than two zeros
    assert is_two_four(w)
    packed = pack_two_four(w)
    assert packed["nm_values"].shape == (6, 8) and packed["nm_meta"].numel() == 6 * 4 // 2
    assert torch.equal(unpack_two_four(packed["nm_values"], packed["nm_meta"], (6, 16)), w)


def _prune(model: torch.nn.Module, n_m: tuple[int, int] | None) -> None:
    for block in find_decoder_blocks(model):
        for lin in block_linears(block).values():
            w = lin.weight.data
            w[nm_mask(w.abs(), *n_m) if n_m else w.abs() < w.abs().flatten().kthvalue(int(0.7 * w.numel())).values] = 0


def test_compressed_model_reloads_exactly_and_is_smaller(tmp_path: Path) -> None:
    for n_m in (None, (2, 4)):
        model = tiny_model("tiny_llama")
        _prune(model, n_m)
        dense = save_pruned(model, None, tmp_path / f"dense{n_m}", "dense")
        small = save_pruned(model, None, tmp_path / f"small{n_m}", "compressed")
        assert small["saved_bytes"] < dense["saved_bytes"]
        back = load_pruned(tmp_path / f"small{n_m}", torch.float32)
        for (name, p), (_, q) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
            assert torch.equal(p, q), name
        assert model_sparsity(back) == model_sparsity(model)
        ids = torch.randint(0, 256, (1, 16))
        torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=0, atol=0)
