"""Pick a torch device and the autocast precision it supports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_CHOICES = ("auto", "cuda", "mps", "cpu")


def pick_device(prefer: str = "auto") -> torch.device:
    """``auto`` takes cuda, then mps, then cpu; naming an unavailable device is an error, not a silent fallback."""
    if prefer not in _CHOICES and not prefer.startswith("cuda:"):
        raise ValueError(f"unknown device {prefer!r}; choose one of {', '.join(_CHOICES)} or cuda:N")
    if prefer == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if prefer.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {prefer!r} asked for, but CUDA is not available on this machine")
    if prefer == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' asked for, but MPS is not available on this machine")
    return torch.device(prefer)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA with compute capability >= 8 (Ampere+), fp16 on older CUDA and MPS, none on CPU."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision where the device supports it; a no-op on CPU or when disabled."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_torch_threads(n: int) -> None:
    """Pin torch's CPU intra-op threads; 0 keeps torch's default. On a busy small CPU, 1 is often much faster."""
    if n < 0:
        raise ValueError(f"threads must be >= 0 (0 = torch's default), got {n}")
    if n:
        torch.set_num_threads(n)
