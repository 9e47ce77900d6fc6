"""Block discovery by structure, block-by-block activations, achieved sparsity, and unsupported models."""

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from papers.owl.models import tiny_model
from papers.owl.pruners import owl_sparsities
from papers.owl.sequential import (
    UnsupportedModelError,
    block_linears,
    capture_block_inputs,
    dense_input_norms,
    find_decoder_blocks,
    make_plan,
    outlier_ratios,
    prune_sequential,
    run_block,
    sparsity_by_block,
)

SEQS = torch.randint(0, 256, (3, 32), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name,block_class,n_linears", [("tiny_llama", "LlamaDecoderLayer", 7),
                                                         ("tiny_opt", "OPTDecoderLayer", 6),
                                                         ("tiny_mistral", "MistralDecoderLayer", 7),
                                                         ("tiny_qwen2", "Qwen2DecoderLayer", 7),
                                                         ("tiny_gptneox", "GPTNeoXLayer", 4)])
def test_blocks_found_by_structure(name: str, block_class: str, n_linears: int) -> None:
    blocks = find_decoder_blocks(tiny_model(name))
    assert len(blocks) == 4 and type(blocks[0]).__name__ == block_class
    assert len(block_linears(blocks[0])) == n_linears


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_opt", "tiny_mistral", "tiny_qwen2", "tiny_gptneox"])
def test_block_chain_reproduces_the_models_last_block(name: str) -> None:
    model = tiny_model(name)
    blocks = find_decoder_blocks(model)
    seen = []
    handle = blocks[-1].register_forward_hook(lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        for seq in SEQS:
            model(seq.reshape(1, -1), use_cache=False)
    handle.remove()
    hidden, kwargs = capture_block_inputs(model, SEQS)
    assert hidden.shape == (3, 32, 64) and hidden.dtype == torch.float32
    for block in blocks:
        hidden = run_block(block, hidden, kwargs)
    torch.testing.assert_close(hidden, torch.cat(seen), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,pruner", [("tiny_llama", "wanda"), ("tiny_opt", "sparsegpt"), ("tiny_llama", "magnitude")])
def test_achieved_sparsity_equals_assigned(name: str, pruner: str) -> None:
    model = tiny_model(name)
    ratios = outlier_ratios(model, dense_input_norms(model, SEQS, progress=False), 5.0)
    plan = make_plan(pruner, 4, 0.6, None, ratios, 0.1)
    prune_sequential(model, SEQS, plan, progress=False)
    for assigned, row, block in zip(plan.sparsities, sparsity_by_block(model), find_decoder_blocks(model), strict=True):
        for layer, linear in block_linears(block).items():
            # rounding: Wanda floors per row, SparseGPT per 128-column block, magnitude per matrix
            assert row[layer] == pytest.approx(assigned, abs=1.0 / linear.in_features + 1e-6), layer
    assert plan.sparsities == pytest.approx(owl_sparsities(ratios, 0.6, 0.1).tolist())
    assert sum(plan.sparsities) / 4 == pytest.approx(0.6)


def test_later_blocks_see_pruned_activations() -> None:
    dense, pruned = tiny_model("tiny_llama"), tiny_model("tiny_llama")
    prune_sequential(pruned, SEQS, make_plan("wanda", 4, 0.7, None, None, 0.0), progress=False)
    hidden, kwargs = capture_block_inputs(pruned, SEQS)
    dense_hidden = hidden.clone()
    for i in range(2):
        hidden = run_block(find_decoder_blocks(pruned)[i], hidden, kwargs)
        dense_hidden = run_block(find_decoder_blocks(dense)[i], dense_hidden, kwargs)
    assert not torch.allclose(hidden, dense_hidden)  # pruning changed what block 2 was calibrated on


def test_unsupported_models_are_refused_with_what_is_supported() -> None:
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32))  # Conv1D
    for model in (gpt2, nn.Sequential(nn.Linear(4, 4), nn.ReLU())):
        with pytest.raises(UnsupportedModelError, match="LLaMA-family .* OPT"):
            find_decoder_blocks(model)


def test_unknown_pruner_is_refused() -> None:
    with pytest.raises(ValueError, match="pruner"):
        make_plan("random", 4, 0.5, None, None, 0.0)
