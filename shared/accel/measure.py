"""Synchronised timers, a throughput meter, peak memory, and parameter and FLOP counts."""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def _synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


class Timer:
    """Wall-clock timer that waits for queued GPU work at start and stop: ``with Timer(device) as t: ...; t.seconds``."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        _synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        _synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


class ThroughputMeter:
    """Items per second over the updates since creation, skipping the first ``warmup`` updates."""

    def __init__(self, warmup: int = 0, device: torch.device | None = None) -> None:
        self.warmup = warmup
        self.device = device
        self.items = 0
        self.seconds = 0.0
        self._updates = 0
        self._last = time.perf_counter()

    def update(self, items: int) -> None:
        _synchronize(self.device)
        now = time.perf_counter()
        if self._updates >= self.warmup:
            self.items += items
            self.seconds += now - self._last
        self._updates += 1
        self._last = now

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")


def peak_memory_bytes(device: torch.device | None = None) -> int:
    """Peak allocated GPU memory on CUDA; on CPU the process's peak resident set size."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *_: Any, **__: Any) -> int:
    """FLOPs of softmax(Q K^T) V: 2*b*h*s_q*s_k*d for Q K^T plus 2*b*h*s_q*s_k*d_v for the product with V
    (dense count, as torch counts its CUDA attention kernels; causal masking is not discounted)."""
    *batch, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * s_q * s_k * (d + d_v)


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call, counted by torch.utils.flop_counter (a multiply-add counts as 2).

    torch registers no formula for the CPU kernel of ``scaled_dot_product_attention`` (it would count 0), so
    :func:`attention_flops` is registered for it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    with FlopCounterMode(display=False, custom_mapping={cpu_sdpa: attention_flops}) as counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
