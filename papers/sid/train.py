"""Distil a teacher into a one-step (or K-step) generator with SiD: ``python -m papers.sid.train --config FILE
--out DIR [key=value ...]``. Resumes from the last checkpoint in DIR/checkpoints/; writes DIR/generator.pt (EMA weights) and
DIR/generator_raw.pt (the generator's own weights) at the end. Runs on CPU or CUDA (``device``, ``precision``),
accumulates gradients (``micro_batch_size``) and runs under ``torchrun --nproc_per_node N`` with the same global batch
and random draws as one process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from papers.sid.config import Config
from papers.sid.metrics import draw, generator_sampler, quality
from papers.sid.sid import SiDTrainer
from papers.sid.task import build_task
from shared.accel import TrainContext, seed_everything, setup_training
from shared.runs import Run, entrypoint, load_config, parse_run_args, save_checkpoint


def configure(cfg: Config) -> None:
    seed_everything(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)


def context(cfg: Config) -> TrainContext:
    return setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size,
                          strategy=cfg.strategy)


def train(cfg: Config, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    ctx = context(cfg)
    configure(cfg)
    out = Path(out)
    run = Run(out, cfg, overwrite=overwrite)
    start_time = time.perf_counter()
    task = build_task(cfg, out, ctx)
    pretrain_seconds = time.perf_counter() - start_time
    trainer = SiDTrainer(cfg, task.teacher, task.init, task.num_classes, task.shape, real=(task.data, task.labels),
                         ctx=ctx)
    start, seconds, first_loss = 0, 0.0, float("nan")
    state = run.restore()  # the last complete checkpoint; drops rows logged at or after its step
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        start, seconds, first_loss = state["step"], state["seconds"], state.get("first_loss", float("nan"))
    losses = {"loss_fake": float("nan"), "loss_gen": float("nan")}
    bar = tqdm(range(start, cfg.steps), desc="SiD", initial=start, total=cfg.steps, mininterval=5,
               disable=not ctx.is_main)
    tick = time.perf_counter()
    for step in bar:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # per-round stream, the same on every rank
        losses = trainer.round(gen, images_seen=step * cfg.batch_size)  # SiD Algorithm 1: update f_psi, then G
        first_loss = losses["loss_fake"] if step == 0 else first_loss
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            run.log(step, **losses, images_seen=done * cfg.batch_size)  # step: 0-based index of the round
        if cfg.eval_samples and ctx.is_main and (done % cfg.eval_every == 0 or done == cfg.steps):
            stats = {}  # the EMA generator (the evaluated one) and, beside it, the raw generator
            for prefix, net in (("eval_", trainer.ema), ("eval_raw_", trainer.generator)):
                samples, labels = draw(generator_sampler(cfg, net), task, cfg.eval_samples, cfg.seed + 1)
                stats.update({f"{prefix}{k}": v for k, v in quality(cfg, task, samples, labels).items()})
            run.log(step, images_seen=done * cfg.batch_size, **stats)
            bar.set_postfix({k: round(v, 4) for k, v in stats.items() if k.endswith(("energy_distance", "fid"))})
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            run.save_checkpoint({"trainer": trainer.state_dict(), "step": done, "seconds": seconds,
                                 "first_loss": first_loss}, done)
    if ctx.is_main:
        for name, net in (("generator.pt", trainer.ema), ("generator_raw.pt", trainer.generator)):
            state_dict = {k: v.cpu() for k, v in net.state_dict().items()}
            save_checkpoint(out / name, {"model": state_dict, "num_classes": task.num_classes})
    ctx.barrier()
    history = [r for r in run.history() if "loss_gen" in r]
    done = cfg.steps - start
    result = run.finish({
        "steps": cfg.steps,
        "final_loss_gen": history[-1]["loss_gen"] if history else float("nan"),
        "final_loss_fake": history[-1]["loss_fake"] if history else float("nan"),
        "first_loss": first_loss,  # f_psi's denoising loss (loss_fake) in round 0 and in the last round
        "final_loss": losses["loss_fake"],
        "train_seconds": seconds,
        "pretrain_seconds": pretrain_seconds,
        "images_seen": cfg.steps * cfg.batch_size,
        "steps_per_s": cfg.steps / seconds if done and seconds else float("nan"),  # seconds: all rounds
        "images_per_s": cfg.steps * cfg.batch_size / seconds if done and seconds else float("nan"),
        "peak_gpu_memory_bytes": ctx.peak_gpu_memory_bytes(),
        "world_size": ctx.world_size,
    })
    ctx.close()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, "Distil a diffusion teacher with Score identity Distillation (SiD).",
                          multi_process=True)
    cfg = load_config(Config, args.config, args.overrides)
    return train(cfg, args.out, overwrite=args.overwrite)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
