"""Expert surgery for the paper's extendability and specialisation claims: add experts, measure usage, prune."""

from __future__ import annotations

import torch
from torch import nn

from papers.moduleformer.modeling import ModuleFormerForCausalLM, MoE, ParallelExperts


def moe_layers(model: ModuleFormerForCausalLM) -> dict[str, MoE]:
    """The gated MoEs of ``model`` by module name; a dense baseline has none to extend, count or prune."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, MoE) and not m.dense}
    if not layers:
        raise ValueError("expert surgery needs a gated ModuleFormer; this model is dense (config.dense=True)")
    return layers


def _resize_experts(experts: ParallelExperts, index: torch.Tensor | None, n_new: int) -> None:
    weight = experts.weight.data if index is None else experts.weight.data[index]
    fresh = torch.empty(n_new, *weight.shape[1:]).uniform_(-1 / weight.shape[1], 1 / weight.shape[1])
    experts.weight = nn.Parameter(torch.cat([weight, fresh]))


def _resize_gate(gate_out: nn.Linear, index: torch.Tensor | None, n_new: int) -> nn.Linear:
    weight = gate_out.weight.data if index is None else gate_out.weight.data[index]
    layer = nn.Linear(gate_out.in_features, len(weight) + n_new, bias=False)
    with torch.no_grad():
        layer.weight[: len(weight)] = weight
        layer.weight[len(weight) :].normal_(0, 0.02)
    return layer


def add_experts(model: ModuleFormerForCausalLM, n_new: int) -> list[nn.Parameter]:
    """Append ``n_new`` fresh experts to every MoE; return the parameters a frozen-old-experts run should train.

    Old expert weights and old gate rows stay fixed: gradients reach only the new experts and their gate rows
    (a hook zeroes the old rows' gradient of the shared gate matrix).
    """
    trainable: list[nn.Parameter] = []
    n_old_rows = {}
    for moe in moe_layers(model).values():
        n_old = moe.experts.weight.shape[0]
        n_old_rows[moe] = n_old
        for experts in (moe.experts, moe.output_experts):
            _resize_experts(experts, None, n_new)
            experts.weight.register_hook(lambda g, n=n_old: torch.cat([torch.zeros_like(g[:n]), g[n:]]))
            trainable.append(experts.weight)
        moe.gate.net[-1] = _resize_gate(moe.gate.net[-1], None, n_new)
        moe.gate.net[-1].weight.register_hook(lambda g, n=n_old: torch.cat([torch.zeros_like(g[:n]), g[n:]]))
        trainable.append(moe.gate.net[-1].weight)
    model.config.n_att_experts += n_new
    model.config.n_mlp_experts += n_new
    return trainable


@torch.no_grad()
def expert_usage(model: ModuleFormerForCausalLM, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Share of routed token slots each expert receives, per MoE, over ``windows`` (B, T)."""
    counts: dict[str, torch.Tensor] = {}
    hooks = []
    for name, moe in moe_layers(model).items():
        def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: tuple, name: str = name) -> None:
            sizes = torch.tensor(output[1].expert_sizes, dtype=torch.float64)
            counts[name] = counts.get(name, torch.zeros_like(sizes)) + sizes
        hooks.append(moe.gate.register_forward_hook(hook))
    model(windows)
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
        moe.gate.net[-1] = _resize_gate(moe.gate.net[-1], keep, 0)
        kept[name] = len(keep)
    return kept
