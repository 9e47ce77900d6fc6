"""Accelerator utilities: device choice, seeding, precision, the training context (accumulation, torchrun),
timers, memory and FLOP counts."""

from shared.accel.device import autocast, autocast_dtype, pick_device, set_torch_threads
from shared.accel.distributed import (
    DistInfo,
    all_reduce_mean,
    cleanup_distributed,
    init_distributed,
    rank_zero_logger,
)
from shared.accel.measure import ThroughputMeter, Timer, count_flops, count_parameters, peak_memory_bytes
from shared.accel.seeding import jax_key, seed_everything, set_deterministic
from shared.accel.training import TrainContext, resolve_precision, setup_training

__all__ = [
    "DistInfo",
    "ThroughputMeter",
    "Timer",
    "TrainContext",
    "all_reduce_mean",
    "autocast",
    "autocast_dtype",
    "cleanup_distributed",
    "count_flops",
    "count_parameters",
    "init_distributed",
    "jax_key",
    "peak_memory_bytes",
    "pick_device",
    "rank_zero_logger",
    "resolve_precision",
    "seed_everything",
    "set_deterministic",
    "set_torch_threads",
    "setup_training",
]
