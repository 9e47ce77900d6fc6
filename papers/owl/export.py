"""Saving a pruned model: dense safetensors, or compressed (kept values and a bit-packed mask; 2:4 layers as
two values per group of four plus 2-bit positions, the layout semi-structured sparse kernels read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from papers.owl.sequential import block_linears, find_decoder_blocks

SPARSE_FILE = "sparse.safetensors"


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def is_two_four(weight: torch.Tensor) -> bool:
    """Every group of 4 consecutive inputs of every row holds at least 2 zeros."""
    return weight.shape[1] % 4 == 0 and bool(((weight.reshape(weight.shape[0], -1, 4) == 0).sum(-1) >= 2).all())


def pack_two_four(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """(rows, cols/2) kept values and, per group of 4, the two kept positions (2 bits each, 2 groups a byte)."""
    groups = weight.reshape(weight.shape[0], -1, 4)
    keep = torch.sort(torch.topk((groups != 0).to(torch.int8) * 4 + torch.arange(4), 2, dim=-1).indices % 4,
                      dim=-1).values  # the nonzero positions first (ties: index order), ascending
    values = torch.gather(groups, 2, keep).reshape(weight.shape[0], -1)
    codes = (keep[..., 0] | (keep[..., 1] << 2)).flatten().to(torch.uint8)  # 4 bits per group
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    meta = codes[0::2] | (codes[1::2] << 4)
    return {"nm_values": values.contiguous(), "nm_meta": meta}


def unpack_two_four(values: torch.Tensor, meta: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    rows, cols = shape
    codes = torch.stack([meta & 15, meta >> 4], dim=1).flatten()[: rows * cols // 4].long()
    keep = torch.stack([codes & 3, codes >> 2], dim=-1).reshape(rows, cols // 4, 2)
    out = torch.zeros(rows, cols // 4, 4, dtype=values.dtype)
    out.scatter_(2, keep, values.reshape(rows, cols // 4, 2))
    return out.reshape(rows, cols)


def compressed_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter once (a tied head is stored with the embedding); decoder linears as values + mask."""
    linear_names = {f"{prefix}.{name}.weight" for prefix, block in _block_prefixes(model)
                    for name in block_linears(block)}
    out: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        w = param.detach().cpu()
        if name in linear_names and (w == 0).any():
            out[f"{name}.shape"] = torch.tensor(w.shape)
            if is_two_four(w):
                out.update({f"{name}.{k}": v for k, v in pack_two_four(w).items()})
            else:
                mask = (w != 0).flatten().numpy()
                out[f"{name}.values"] = w.flatten()[torch.from_numpy(mask)]
                out[f"{name}.mask"] = torch.from_numpy(np.packbits(mask))
        else:
            out[name] = w.contiguous()
    return out


def _block_prefixes(model: nn.Module) -> list[tuple[str, nn.Module]]:
    blocks = find_decoder_blocks(model)
    prefix = next(name for name, mod in model.named_modules() if mod is blocks)
    return [(f"{prefix}.{i}", block) for i, block in enumerate(blocks)]


def dense_tensors(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``compressed_tensors``: full weights from values and masks."""
    out = {k: v for k, v in stored.items() if k.rsplit(".", 1)[-1] not in ("shape", "values", "mask", "nm_values",
                                                                             "nm_meta")}
    for key in [k for k in stored if k.endswith(".shape")]:
        name, shape = key.removesuffix(".shape"), tuple(stored[key].tolist())
        if f"{name}.nm_values" in stored:
            out[name] = unpack_two_four(stored[f"{name}.nm_values"], stored[f"{name}.nm_meta"], shape)
        else:
            numel = int(np.prod(shape))
            mask = torch.from_numpy(np.unpackbits(stored[f"{name}.mask"].numpy())[:numel].astype(bool))
            full = torch.zeros(numel, dtype=stored[f"{name}.values"].dtype)
            full[mask] = stored[f"{name}.values"]
            out[name] = full.reshape(shape)
    return out


def save_pruned(model: nn.Module, tokenizer: object | None, path: Path, fmt: str = "dense") -> dict[str, int]:
    """Write the pruned model to ``path``; returns its size on disk and the dense size of its parameters."""
    path.mkdir(parents=True, exist_ok=True)
    if fmt == "dense":
        model.save_pretrained(path)
    elif fmt == "compressed":
        model.config.save_pretrained(path)
        save_file(compressed_tensors(model), path / SPARSE_FILE)
    else:
        raise ValueError(f"save_format must be dense or compressed, got {fmt!r}")
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    dense = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"saved_bytes": _dir_bytes(path), "dense_parameter_bytes": dense}


def load_pruned(path: Path, dtype: torch.dtype) -> nn.Module:
    """A model saved by ``save_pruned`` in either format."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (path / SPARSE_FILE).is_file():
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), torch_dtype=dtype)
    missing, unexpected = model.load_state_dict(dense_tensors(load_file(path / SPARSE_FILE)), strict=False)
    if unexpected or any(k not in {n for n, _ in model.named_buffers()} and "lm_head" not in k for k in missing):
        raise ValueError(f"{path / SPARSE_FILE} does not match its config: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()
