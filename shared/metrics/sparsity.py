"""Sparsity statistics of tensors and of a model's linear layers."""

from __future__ import annotations

import dataclasses

import torch


def sparsity(tensor: torch.Tensor) -> float:
    """Fraction of exactly-zero entries."""
    return float((tensor == 0).sum().item() / tensor.numel())


@dataclasses.dataclass
class SparsityReport:
    per_layer: dict[str, float]
    overall: float

    def as_dict(self) -> dict[str, object]:
        return {"overall": self.overall, "per_layer": self.per_layer}


def sparsity_report(model: torch.nn.Module, module_types: tuple[type[torch.nn.Module], ...] = (torch.nn.Linear,)) -> SparsityReport:
    """Per-module and parameter-weighted overall sparsity of the weights of ``module_types`` modules."""
    per_layer, zeros, total = {}, 0, 0
    for name, module in model.named_modules():
        if isinstance(module, module_types):
            weight = module.weight
            per_layer[name] = sparsity(weight)
            zeros += int((weight == 0).sum().item())
            total += weight.numel()
    if total == 0:
        raise ValueError("the model has no modules of the requested types")
    return SparsityReport(per_layer=per_layer, overall=zeros / total)
