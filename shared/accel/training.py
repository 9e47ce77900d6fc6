"""One training context for every torch ``train.py``: device, mixed precision, gradient accumulation and
torch.distributed (torchrun / accelerate launch), so a run on N processes follows the 1-process run.

The loop draws the GLOBAL batch from its step-seeded generator on every rank; :meth:`TrainContext.train_step`
takes this rank's contiguous rows, splits them into micro-batches and scales each micro-batch loss by its share
of the global batch, so the summed gradient is the gradient of the global-batch mean whatever the number of
processes and micro-batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from shared.accel.device import pick_device
from shared.accel.distributed import DistInfo, init_distributed
from shared.runs.errors import UserError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
STRATEGIES = ("ddp", "fsdp")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}

Batch = Any  # a tensor, or a tuple / list / dict of tensors (other leaves pass through unchanged)
LossFn = Callable[[nn.Module, Batch], "torch.Tensor | tuple[torch.Tensor, Mapping[str, torch.Tensor]]"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on CUDA with compute capability >= 8, fp16 on older CUDA, fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
    return "fp32"


@dataclasses.dataclass
class TrainContext:
    """What a training loop needs to know about where and how it runs; build it with :func:`setup_training`."""

    device: torch.device
    dist: DistInfo
    precision: str
    global_batch: int
    micro_batch: int
    strategy: str
    scaler: Any = None

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: full fp32)."""
        return _DTYPES[self.precision]

    @property
    def accum_steps(self) -> int:
        """Micro-batches per rank in one optimizer step of ``global_batch`` rows."""
        return math.ceil(self.global_batch / self.world_size / self.micro_batch)

    # -- models -------------------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, *, wrap: bool = True, find_unused_parameters: bool = False) -> nn.Module:
        """Move ``model`` to the device; under several processes wrap it in DDP (or FSDP) when it trains.

        ``wrap=False`` keeps the bare module: :meth:`train_step` then averages its gradients with one all-reduce,
        which suits loops that update several networks in turn.
        """
        model = model.to(self.device)
        trains = any(p.requires_grad for p in model.parameters())
        if self.world_size == 1 or not wrap or not trains:
            return model
        if self.strategy == "fsdp":
            from torch.distributed.fsdp import FullyShardedDataParallel

            return FullyShardedDataParallel(model, device_id=self.device if self.device.type == "cuda" else None)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        """The module inside a DDP / FSDP wrapper (for state_dict, save_pretrained, evaluation)."""
        return model.module if _is_wrapped(model) else model

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Mixed precision for forward passes (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # -- one optimizer step ---------------------------------------------------------------------------------
    def micro_batches(self, batch: Batch) -> Iterator[tuple[Batch, int, int]]:
        """(micro-batch on the device, its rows, rows in the whole global batch) for this rank."""
        total = _rows(batch)
        if total < self.world_size:
            raise UserError(f"a batch of {total} rows cannot be split over {self.world_size} processes")
        lo, hi = _share(total, self.world_size, self.rank)
        n_micro = max(1, math.ceil((hi - lo) / self.micro_batch))
        for start in range(n_micro):
            a, b = _share(hi - lo, n_micro, start)
            if b > a:
                yield _to(_slice(batch, lo + a, lo + b), self.device), b - a, total

    def train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        loss_fn: LossFn,
        clip_norm: float | None = None,
    ) -> dict[str, float]:
        """Forward/backward over this rank's micro-batches, average gradients over ranks, clip, step, zero grads.

        Returns the global-batch means of the loss and of each named part, and the gradient norm before clipping
        (nan when ``clip_norm`` is None).
        """
        chunks = list(self.micro_batches(batch))
        sums: dict[str, torch.Tensor] = {}
        for i, (micro, rows, total) in enumerate(chunks):
            sync = i == len(chunks) - 1 or not _is_wrapped(model)
            with (contextlib.nullcontext() if sync else model.no_sync()), self.autocast():
                out = loss_fn(model, micro)
                loss, parts = (out if isinstance(out, tuple) else (out, {}))
            # d(global mean)/d(theta): each micro mean weighs rows/total; DDP then averages over world_size ranks.
            scaled = loss * (rows * self.world_size / total)
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            for name, value in {"loss": loss, **parts}.items():
                term = value.detach().float() * (rows / total)
                sums[name] = sums[name] + term if name in sums else term
        if not _is_wrapped(model):
            self._all_reduce_grads(optimizer)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        grad_norm = math.nan
        if clip_norm is not None:
            if isinstance(model, _fsdp_class()):
                grad_norm = float(model.clip_grad_norm_(clip_norm))
            else:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(_params(optimizer), clip_norm))
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stats = {name: float(self._sum(value)) for name, value in sums.items()}
        return {**stats, "grad_norm": grad_norm}

    def _all_reduce_grads(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients over ranks for bare modules; a parameter no rank used keeps grad None (as in 1 process)."""
        if self.world_size == 1:
            return
        params = [p for p in _params(optimizer) if p.requires_grad]
        used = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=self.device)
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
        live = [p for p, u in zip(params, used.tolist()) if u]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for dtype in {p.grad.dtype for p in live}:
            grads = [p.grad for p in live if p.grad.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    # -- collectives ------------------------------------------------------------------------------------------
    def _sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.device)
        if self.world_size > 1:
            dist.all_reduce(value)
        return value

    def all_reduce_mean(self, value: float | torch.Tensor) -> float | torch.Tensor:
        """The mean of ``value`` over ranks (``value`` itself in one process)."""
        if self.world_size == 1:
            return value
        tensor = torch.as_tensor(value, dtype=torch.float64 if isinstance(value, float) else None, device=self.device)
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= self.world_size
        return float(tensor) if isinstance(value, float) else tensor

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def peak_gpu_memory_bytes(self) -> int:
        """Peak allocated CUDA memory on this rank's device; 0 off CUDA."""
        return int(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else 0

    def close(self) -> None:
        """Leave the process group (call once at the end of train.py)."""
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup_training(
    device: str = "auto", precision: str = "auto", *, global_batch: int, micro_batch: int = 0, strategy: str = "ddp"
) -> TrainContext:
    """Join torchrun's process group if there is one, pick the device and precision, and size the micro-batches.

    ``micro_batch`` 0 means one micro-batch per rank (``global_batch // world_size`` rows).
    """
    if strategy not in STRATEGIES:
        raise UserError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if global_batch <= 0 or micro_batch < 0:
        raise UserError(f"global batch must be > 0 and micro_batch_size >= 0, got {global_batch} and {micro_batch}")
    try:
        info = init_distributed()
        if device == "auto" and info.world_size > 1 and torch.cuda.is_available():
            device = f"cuda:{info.local_rank}"
        chosen = pick_device(device)
    except (ValueError, RuntimeError) as err:
        raise UserError(str(err)) from err
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", torch.cuda.current_device())
    if strategy == "fsdp" and chosen.type != "cuda":
        raise UserError("strategy 'fsdp' shards over GPUs and needs CUDA; use strategy 'ddp' on CPU")
    if global_batch % info.world_size:
        raise UserError(f"batch size {global_batch} does not split evenly over {info.world_size} processes")
    per_rank = global_batch // info.world_size
    micro = micro_batch or per_rank
    if micro > per_rank:
        raise UserError(f"micro_batch_size {micro} exceeds the {per_rank} rows each of {info.world_size} process(es) gets")
    resolved = resolve_precision(precision, chosen)
    scaler = torch.amp.GradScaler(chosen.type) if resolved == "fp16" else None
    return TrainContext(chosen, info, resolved, global_batch, micro, strategy, scaler)


def _fsdp_class() -> type:
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel


def _is_wrapped(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DistributedDataParallel, _fsdp_class()))


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _share(n: int, parts: int, index: int) -> tuple[int, int]:
    """Rows [lo, hi) of part ``index`` when ``n`` rows are cut into ``parts`` contiguous, near-equal parts."""
    base, extra = divmod(n, parts)
    lo = index * base + min(index, extra)
    return lo, lo + base + (index < extra)


def _rows(batch: Batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    leaves = batch.values() if isinstance(batch, Mapping) else batch
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            return leaf.shape[0]
    raise UserError("a batch must be a tensor or hold at least one tensor")


def _slice(batch: Batch, lo: int, hi: int) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    if isinstance(batch, Mapping):
        return {k: _slice(v, lo, hi) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(v, lo, hi) for v in batch)
    return batch


def _to(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device) for v in batch)
    return batch
