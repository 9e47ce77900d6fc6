"""The experiment's settings: one dataclass, loaded from configs/*.yaml with strict keys."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Config:
    seed: int = 0
    steps: int = 500
    batch_size: int = 256
    hidden: int = 64
    lr: float = 3e-3
    eval_points: int = 5000
    checkpoint_every: int = 100
    device: str = "auto"
    precision: str = "auto"
    micro_batch_size: int = 0  # rows per forward pass on each process; 0 = the whole per-process batch

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.hidden <= 0:
            raise ValueError("steps, batch_size and hidden must be positive")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
