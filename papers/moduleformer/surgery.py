"""Expert surgery for the paper's extendability and specialisation claims: add experts, measure usage, prune.

Surgery keeps each tensor's dtype and device and writes the new per-layer expert counts into the config
(``att_experts_per_layer`` / ``mlp_experts_per_layer``), so an edited model saves and reloads with
``from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from papers.moduleformer.modeling import ModuleFormerForCausalLM, MoE, ParallelExperts


def moe_layers(model: ModuleFormerForCausalLM) -> dict[str, MoE]:
    """The gated MoEs of ``model`` by module name; a dense baseline has none to extend, count or prune."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, MoE) and not m.dense}
    if not layers:
        raise ValueError("expert surgery needs a gated ModuleFormer; this model is dense (config.dense=True)")
    return layers


def _sync_config(model: ModuleFormerForCausalLM) -> None:
    """Record every block's expert counts in the config (what from_pretrained rebuilds)."""
    blocks = model.transformer.h
    model.config.att_experts_per_layer = [b.attn.q_proj.experts.weight.shape[0] for b in blocks]
    model.config.mlp_experts_per_layer = [b.mlpf.experts.weight.shape[0] for b in blocks]


def _resize_experts(experts: ParallelExperts, index: torch.Tensor | None, n_new: int) -> None:
    weight = experts.weight.data if index is None else experts.weight.data[index.to(experts.weight.device)]
    bound = 1 / weight.shape[1]
    fresh = torch.empty(n_new, *weight.shape[1:], dtype=weight.dtype, device=weight.device).uniform_(-bound, bound)
    experts.weight = nn.Parameter(torch.cat([weight, fresh]))


def _resize_gate(gate_out: nn.Linear, index: torch.Tensor | None, n_new: int) -> nn.Linear:
    weight = gate_out.weight.data if index is None else gate_out.weight.data[index.to(gate_out.weight.device)]
    layer = nn.Linear(gate_out.in_features, len(weight) + n_new, bias=False, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        layer.weight[: len(weight)] = weight
        layer.weight[len(weight) :].normal_(0, 0.02)
    return layer


def _zero_rows_below(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A gradient hook that zeroes the first ``n`` rows (the frozen experts or gate rows of a shared tensor)."""
    return lambda grad: torch.cat([torch.zeros_like(grad[:n]), grad[n:]])


def add_experts(model: ModuleFormerForCausalLM, n_new: int) -> list[nn.Parameter]:
    """Append ``n_new`` fresh experts to every MoE; return the only parameters left trainable.

    Every other parameter gets ``requires_grad=False``. The new experts share a tensor with the old ones (and the
    new gate rows a matrix with the old rows), so a gradient hook zeroes the old rows' gradient; with weight decay
    off, Adam then leaves the old rows exactly unchanged.
    """
    trainable: list[nn.Parameter] = []
    for moe in moe_layers(model).values():
        n_old = moe.experts.weight.shape[0]
        for experts in (moe.experts, moe.output_experts):
            _resize_experts(experts, None, n_new)
            trainable.append(experts.weight)
        moe.gate.w_gate[-1] = _resize_gate(moe.gate.w_gate[-1], None, n_new)
        trainable.append(moe.gate.w_gate[-1].weight)
        for param in trainable[-3:]:
            param.register_hook(_zero_rows_below(n_old))
    keep = {id(p) for p in trainable}
    for param in model.parameters():
        param.requires_grad_(id(param) in keep)
    _sync_config(model)
    return trainable


@torch.no_grad()
def expert_usage(model: ModuleFormerForCausalLM, windows: torch.Tensor, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Share of routed token slots each expert receives, per MoE, over ``windows`` (B, T), in batches."""
    counts: dict[str, torch.Tensor] = {}
    hooks = []
    for name, moe in moe_layers(model).items():
        def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: tuple, name: str = name) -> None:
            sizes = torch.tensor(output[1].expert_sizes, dtype=torch.float64)
            counts[name] = counts.get(name, torch.zeros_like(sizes)) + sizes
        hooks.append(moe.gate.register_forward_hook(hook))
    device = next(model.parameters()).device
    for batch in windows.split(batch_size):
        model(batch.to(device), use_cache=False)
    for h in hooks:
        h.remove()
    return {name: c / c.sum() for name, c in counts.items()}


def prune_experts(model: ModuleFormerForCausalLM, usage: dict[str, torch.Tensor], min_share: float) -> dict[str, int]:
    """Drop the experts whose usage share is below ``min_share`` / E (keeping at least k); returns experts kept."""
    kept = {}
    for name, moe in moe_layers(model).items():
        share, k = usage[name], moe.gate.k
        keep = torch.nonzero(share >= min_share / len(share)).flatten()
        if len(keep) < k:
            keep = share.topk(k).indices.sort().values
        for experts in (moe.experts, moe.output_experts):
            _resize_experts(experts, keep, 0)
        moe.gate.w_gate[-1] = _resize_gate(moe.gate.w_gate[-1], keep, 0)
        kept[name] = len(keep)
    _sync_config(model)
    return kept
