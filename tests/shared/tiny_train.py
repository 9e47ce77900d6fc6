"""A tiny training entry point on shared.runs + shared.accel, for the tests of resume and multi-process runs.

    python -m tests.shared.tiny_train --config FILE --out DIR [key=value ...]

With TINY_KILL_AT_STEP=k in the environment the process SIGKILLs itself before step k (a test of hard crashes).
"""

from __future__ import annotations

import dataclasses
import os
import signal

import torch
from torch import nn

from shared.accel import seed_everything, setup_training
from shared.runs import Run, entrypoint, load_config, parse_run_args


@dataclasses.dataclass
class TinyConfig:
    seed: int = 0
    steps: int = 8
    batch_size: int = 8
    micro_batch_size: int = 0
    lr: float = 0.05
    checkpoint_every: int = 2
    device: str = "cpu"
    precision: str = "fp32"
    strategy: str = "ddp"
    wrap: bool = True


def global_batch(cfg: TinyConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's global batch from a generator seeded by (seed, step): identical on every rank and on resume."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    x = torch.randn(cfg.batch_size, 4, generator=gen)
    return x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(cfg.batch_size, generator=gen)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__, multi_process=True)
    cfg = load_config(TinyConfig, args.config, args.overrides)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size,
                         strategy=cfg.strategy)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg, overwrite=args.overwrite, keep_checkpoints=2)
    model = ctx.prepare(make_model(cfg.seed), wrap=cfg.wrap)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    start = 0
    if (state := run.restore()) is not None:
        ctx.unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
    kill_at = int(os.environ.get("TINY_KILL_AT_STEP", "-1"))

    def loss_fn(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        err = net(x).squeeze(-1) - y
        return err.pow(2).mean(), {"abs_err": err.abs().mean()}

    stats: dict[str, float] = {}
    for step in range(start, cfg.steps):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        stats = ctx.train_step(model, opt, global_batch(cfg, step), loss_fn, clip_norm=10.0)
        run.log(step, loss=stats["loss"], abs_err=stats["abs_err"])
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            run.save_checkpoint({"model": ctx.unwrap(model).state_dict(), "optimizer": opt.state_dict()}, step + 1)
    result = run.finish({"final_loss": stats.get("loss", float("nan")), "world_size": ctx.world_size})
    ctx.close()
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
