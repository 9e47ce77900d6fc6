"""Block-by-block pruning of a Hugging Face causal LM, calibration activations flowing through pruned blocks.

Decoder blocks are found by module structure (the longest ``nn.ModuleList`` of identical modules holding
``nn.Linear`` sublayers), not by an attribute path, so LLaMA-family models and OPT both work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from papers.owl.offload import block_on, execution_device
from papers.owl.pruners import (
    magnitude_mask,
    outlier_ratio,
    owl_nm_counts,
    owl_sparsities,
    sparsegpt_prune,
    wanda_mask,
    wanda_scores,
)

SUPPORTED = (
    "Hugging Face causal LMs whose decoder blocks are an nn.ModuleList of identical modules with nn.Linear "
    "sublayers; tested: LLaMA-family (LlamaForCausalLM, e.g. SmolLM2, LLaMA-1/2), OPT, Mistral, Qwen2 and GPT-NeoX"
)
PRUNERS = ("magnitude", "wanda", "sparsegpt")
METHODS = ("dense", *PRUNERS, *(f"owl_{p}" for p in PRUNERS))


class UnsupportedModelError(ValueError):
    """The model has no decoder blocks this code can find."""


def find_decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The longest ModuleList whose entries share one class and each hold at least one nn.Linear."""
    best: nn.ModuleList | None = None
    for module in model.modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(b) for b in module}) != 1:
            continue
        if not all(any(isinstance(m, nn.Linear) for m in b.modules()) for b in module):
            continue
        if best is None or len(module) > len(best):
            best = module
    if best is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no decoder blocks I can find. Supported: {SUPPORTED}")
    return best


def block_linears(block: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}


class _Captured(Exception):
    pass


@torch.no_grad()
def capture_block_inputs(model: nn.Module, sequences: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    """Hidden states entering the first decoder block for each sequence (N, T, H), and that block's kwargs.

    Everything stays on the model's device (the official code keeps the calibration activations on the GPU too).
    """
    blocks = find_decoder_blocks(model)
    device = execution_device(model)
    inputs: list[torch.Tensor] = []
    kwargs_seen: dict[str, Any] = {}

    def catch(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        inputs.append(hidden.detach()[0])
        kwargs_seen.update({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Captured

    handle = blocks[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for seq in sequences:
            try:
                model(seq.reshape(1, -1).to(device), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    for key in ("cache", "past_key_value", "past_key_values"):
        kwargs_seen.pop(key, None)
    kwargs_seen["use_cache"] = False
    return torch.stack(inputs), kwargs_seen


@torch.no_grad()
def run_block(block: nn.Module, inputs: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """The block's outputs for every calibration sequence, one at a time (kwargs were captured at batch 1)."""
    outputs = torch.empty_like(inputs)
    for i in range(inputs.shape[0]):
        out = block(inputs[i : i + 1], **kwargs)
        outputs[i] = (out[0] if isinstance(out, tuple) else out)[0]
    return outputs


@dataclass
class InputStats:
    """Per-input statistics of one linear layer: mean over sequences of ||X_j||^2 (Wanda) and 2/n sum X X^T."""

    sq_norm_sum: torch.Tensor
    hessian_sum: torch.Tensor | None
    n_sequences: int = 0

    @property
    def sq_norm(self) -> torch.Tensor:
        return self.sq_norm_sum / max(self.n_sequences, 1)

    @property
    def hessian(self) -> torch.Tensor:
        assert self.hessian_sum is not None
        return 2.0 * self.hessian_sum / max(self.n_sequences, 1)


@torch.no_grad()
def collect_stats(block: nn.Module, inputs: torch.Tensor, kwargs: dict[str, Any],
                  hessians: bool) -> tuple[dict[str, InputStats], torch.Tensor]:
    """Run the block over all sequences with hooks on its linears; returns their input statistics and the outputs."""
    stats: dict[str, InputStats] = {}
    handles = []
    for name, linear in block_linears(block).items():
        dim, device = linear.in_features, linear.weight.device  # statistics in float32, on the weights' device
        stats[name] = InputStats(torch.zeros(dim, device=device),
                                 torch.zeros(dim, dim, device=device) if hessians else None)

        def hook(_m: nn.Module, args: tuple, _out: torch.Tensor, s: InputStats = stats[name]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            s.sq_norm_sum += (x**2).sum(dim=0)
            if s.hessian_sum is not None:
                s.hessian_sum += x.T @ x
            s.n_sequences += args[0].shape[0]

        handles.append(linear.register_forward_hook(hook))
    try:
        outputs = run_block(block, inputs, kwargs)
    finally:
        for h in handles:
            h.remove()
    return stats, outputs


def block_outlier_scores(block: nn.Module, stats: dict[str, InputStats]) -> list[torch.Tensor]:
    """The Wanda scores of every linear of a block, the population OWL counts outliers in."""
    return [wanda_scores(lin.weight.detach().float(), stats[name].sq_norm) for name, lin in block_linears(block).items()]


@torch.no_grad()
def dense_input_norms(model: nn.Module, sequences: torch.Tensor, progress: bool = True) -> list[dict[str, torch.Tensor]]:
    """OWL pass 1: per block, per linear ||X_j||^2 of the dense model (inputs from unpruned blocks), on the CPU."""
    blocks = find_decoder_blocks(model)
    device = execution_device(model)
    inputs, kwargs = capture_block_inputs(model, sequences)
    norms = []
    for block in tqdm(blocks, desc="outlier pass (dense)", disable=not progress, leave=False):
        with block_on(block, device):
            stats, inputs = collect_stats(block, inputs, kwargs, hessians=False)
        norms.append({name: s.sq_norm.cpu() for name, s in stats.items()})
    return norms


def outlier_ratios(model: nn.Module, norms: list[dict[str, torch.Tensor]], m: float,
                   per_layer: bool = False) -> list[float] | list[dict[str, float]]:
    """D_l for every block (OWL Sec. 4), or with ``per_layer`` D of every linear of every block (App. C), from the
    dense pass's input norms and the model's (dense) weights."""
    ratios: list = []
    device = execution_device(model)
    for block, block_norms in zip(find_decoder_blocks(model), norms, strict=True):
        with block_on(block, device):
            stats = {k: InputStats(v.to(device, torch.float32), None, 1) for k, v in block_norms.items()}
            scores = block_outlier_scores(block, stats)
            if per_layer:
                ratios.append({name: outlier_ratio([sc], m) for name, sc in zip(block_linears(block), scores)})
            else:
                ratios.append(outlier_ratio(scores, m))
    return ratios


@dataclass
class PrunePlan:
    """What each block gets: one unstructured sparsity, or an N:M pattern (N may vary per block under OWL);
    ``layer_sparsities`` (per-layer OWL, App. C) overrides the block's sparsity for each named linear."""

    pruner: str
    sparsities: list[float]
    nm: list[tuple[int, int]] | None = None
    blocksize: int = 128
    damp: float = 0.01
    outlier_ratios: list = field(default_factory=list)
    tie_break: str = "stable"
    layer_sparsities: list[dict[str, float]] | None = None


def make_plan(pruner: str, n_blocks: int, sparsity: float, nm: tuple[int, int] | None,
              ratios: list[float] | list[dict[str, float]] | None, lam: float, blocksize: int = 128,
              damp: float = 0.01, tie_break: str = "stable") -> PrunePlan:
    """Uniform ratios when ``ratios`` is None, else OWL's (Sec. 4) from the blocks' outlier ratios; ratios given
    per linear (dicts) give every linear its own sparsity from one OWL allocation over all linears (App. C)."""
    if pruner not in PRUNERS:
        raise ValueError(f"unknown pruner {pruner!r}; choose one of {PRUNERS}")
    extra = dict(blocksize=blocksize, damp=damp, outlier_ratios=ratios or [], tie_break=tie_break)
    if ratios and isinstance(ratios[0], dict):
        if nm is not None:
            raise ValueError("per-layer OWL ratios (owl_granularity: layer) are for unstructured sparsity only")
        flat = [r for block in ratios for r in block.values()]
        layer_s = iter(owl_sparsities(flat, sparsity, lam).tolist())
        layers = [{name: next(layer_s) for name in block} for block in ratios]
        return PrunePlan(pruner, [float(np.mean(list(b.values()))) for b in layers], None,
                         layer_sparsities=layers, **extra)
    if nm is not None:
        counts = [nm[0]] * n_blocks if ratios is None else owl_nm_counts(ratios, nm[0], nm[1], lam).tolist()
        return PrunePlan(pruner, [c / nm[1] for c in counts], [(c, nm[1]) for c in counts], **extra)
    sparsities = [sparsity] * n_blocks if ratios is None else owl_sparsities(ratios, sparsity, lam).tolist()
    return PrunePlan(pruner, sparsities, None, **extra)


@torch.no_grad()
def prune_block(block: nn.Module, plan: PrunePlan, index: int, stats: dict[str, InputStats] | None) -> None:
    """Prune every linear of one block at the block's assigned sparsity (OWL: one ratio per block)."""
    nm = plan.nm[index] if plan.nm else None
    for name, linear in block_linears(block).items():
        sparsity = plan.layer_sparsities[index][name] if plan.layer_sparsities else plan.sparsities[index]
        weight = linear.weight.data
        if nm is not None and nm[0] == 0:
            continue
        if plan.pruner == "magnitude":
            weight[magnitude_mask(weight, sparsity, nm, plan.tie_break)] = 0.0
        elif plan.pruner == "wanda":
            assert stats is not None
            weight[wanda_mask(weight, stats[name].sq_norm, sparsity, nm, plan.tie_break)] = 0.0
        else:
            assert stats is not None
            linear.weight.data = sparsegpt_prune(weight, stats[name].hessian, sparsity, nm, plan.blocksize,
                                                 plan.damp, plan.tie_break)


BlockDone = Callable[[int, torch.Tensor], None]


@torch.no_grad()
def prune_sequential(model: nn.Module, sequences: torch.Tensor, plan: PrunePlan, start_block: int = 0,
                     start_inputs: torch.Tensor | None = None, on_block_done: BlockDone | None = None,
                     progress: bool = True) -> None:
    """Prune blocks in order; block l's statistics come from inputs that passed through pruned blocks < l.

    ``start_block``/``start_inputs`` resume an interrupted run; ``on_block_done(l, next_inputs)`` checkpoints.
    """
    blocks = find_decoder_blocks(model)
    if len(plan.sparsities) != len(blocks):
        raise ValueError(f"the plan has {len(plan.sparsities)} ratios for {len(blocks)} blocks")
    device = execution_device(model)
    if plan.pruner == "magnitude":  # data-free: no activations needed
        for i in range(start_block, len(blocks)):
            with block_on(blocks[i], device):
                prune_block(blocks[i], plan, i, None)
            if on_block_done is not None:
                on_block_done(i, torch.empty(0))
        return
    if start_inputs is None:
        inputs, kwargs = capture_block_inputs(model, sequences)
    else:
        inputs, kwargs = start_inputs, capture_block_inputs(model, sequences[:1])[1]
    bar = tqdm(range(start_block, len(blocks)), desc=f"prune {plan.pruner}", disable=not progress, leave=False)
    for i in bar:
        with block_on(blocks[i], device):  # offloaded models: only this block on the GPU
            stats, _ = collect_stats(blocks[i], inputs, kwargs, hessians=plan.pruner == "sparsegpt")
            prune_block(blocks[i], plan, i, stats)
            del stats
            inputs = run_block(blocks[i], inputs, kwargs)  # pruned outputs feed the next block
        if on_block_done is not None:
            on_block_done(i, inputs)


def sparsity_by_block(model: nn.Module) -> list[dict[str, float]]:
    """Achieved fraction of zero weights of every linear, block by block, plus the block's total."""
    report = []
    for block in find_decoder_blocks(model):
        row: dict[str, float] = {}
        zeros = total = 0
        for name, linear in block_linears(block).items():
            w = linear.weight
            row[name] = float((w == 0).float().mean())
            zeros += int((w == 0).sum())
            total += w.numel()
        row["block"] = zeros / total
        report.append(row)
    return report


def model_sparsity(model: nn.Module) -> float:
    """Zeros over every parameter of the model (embeddings, a tied lm_head counted once, norms, biases)."""
    zeros = total = 0
    for p in model.parameters():
        zeros += int((p == 0).sum())
        total += p.numel()
    return zeros / total


def overall_sparsity(model: nn.Module) -> float:
    """Zeros over all weights of the decoder blocks' linears (what the target sparsity refers to)."""
    zeros = total = 0
    for block in find_decoder_blocks(model):
        for linear in block_linears(block).values():
            zeros += int((linear.weight == 0).sum())
            total += linear.weight.numel()
    return zeros / total


def seeded_windows(stream: torch.Tensor, n: int, length: int, seed: int) -> torch.Tensor:
    """``n`` random windows of ``length`` tokens from a token stream (the C4 sampling of Wanda/OWL, on one stream)."""
    if stream.numel() <= length:
        raise ValueError(f"the calibration stream has {stream.numel()} tokens, fewer than one window of {length}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, stream.numel() - length, size=n)
    return torch.stack([stream[s : s + length] for s in starts])
