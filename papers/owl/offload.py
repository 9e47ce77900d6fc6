"""Keep a large model's decoder blocks on the CPU and bring one at a time to the GPU (7B+ models on one GPU)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

OFFLOAD_AUTO_PARAMS = 6_000_000_000  # "auto" offloads models of this many parameters (LLaMA-7B: 6.7e9) on CUDA


def execution_device(model: nn.Module) -> torch.device:
    """Where the model computes: the device of its input embeddings (with offloading the blocks sit elsewhere)."""
    return model.get_input_embeddings().weight.device


def should_offload(model: nn.Module, device: torch.device, offload: str) -> bool:
    """``always``/``never`` as given; ``auto``: on CUDA for models of 7B+ parameters."""
    if offload == "auto":
        return device.type == "cuda" and sum(p.numel() for p in model.parameters()) >= OFFLOAD_AUTO_PARAMS
    return offload == "always"


def offload_blocks(model: nn.Module, blocks: nn.ModuleList, device: torch.device) -> None:
    """Everything but the decoder blocks on ``device`` (embeddings, final norm, head), the blocks on the CPU."""
    blocks.to("cpu")
    inside = {id(m) for m in blocks.modules()}
    for module in model.modules():
        if id(module) in inside:
            continue
        for param in module.parameters(recurse=False):
            param.data = param.data.to(device)
        for name, buf in module.named_buffers(recurse=False):
            module._buffers[name] = buf.to(device)


@contextmanager
def block_on(block: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Run with ``block`` on ``device``; a block that lives elsewhere (offloaded) goes back there afterwards."""
    home = next(block.parameters()).device
    if home == device:
        yield block
        return
    block.to(device)
    try:
        yield block
    finally:
        block.to(home)


@contextmanager
def streamed(blocks: nn.ModuleList, device: torch.device) -> Iterator[None]:
    """Hooks that move each offloaded block to ``device`` for its forward pass and back (full-model forwards)."""
    homes = [next(b.parameters()).device for b in blocks]
    if all(h == device for h in homes):
        yield
        return
    handles = []
    for block, home in zip(blocks, homes, strict=True):
        handles.append(block.register_forward_pre_hook(lambda mod, _args: mod.to(device)))
        handles.append(block.register_forward_hook(lambda mod, _args, _out, home=home: mod.to(home)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
