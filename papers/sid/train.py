"""Distil a teacher into a one-step (or K-step) generator with SiD: ``python -m papers.sid.train --config FILE
--out DIR [key=value ...]``. Resumes from the last checkpoint in DIR/checkpoints/; writes DIR/generator.pt (EMA weights) and
DIR/generator_raw.pt (the generator's own weights) at the end."""

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
from shared.accel import seed_everything
from shared.runs import Run, entrypoint, load_config, parse_run_args, save_checkpoint


def configure(cfg: Config) -> None:
    seed_everything(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)


def train(cfg: Config, out: str | Path) -> dict[str, Any]:
    configure(cfg)
    out = Path(out)
    run = Run(out, cfg)
    start_time = time.perf_counter()
    task = build_task(cfg, out)
    pretrain_seconds = time.perf_counter() - start_time
    trainer = SiDTrainer(cfg, task.teacher, task.init, task.num_classes, task.shape, real=(task.data, task.labels))
    start, seconds = 0, 0.0
    state = run.restore()  # the last complete checkpoint; drops rows logged at or after its step
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        start, seconds = state["step"], state["seconds"]
    losses = {"loss_fake": float("nan"), "loss_gen": float("nan")}
    bar = tqdm(range(start, cfg.steps), desc="SiD", initial=start, total=cfg.steps, mininterval=5)
    tick = time.perf_counter()
    for step in bar:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # per-step stream: resume repeats nothing
        losses = trainer.round(gen, images_seen=step * cfg.batch_size)  # SiD Algorithm 1: update f_psi, then G
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            run.log(step, **losses, images_seen=done * cfg.batch_size)  # step: 0-based index of the round
        if done % cfg.eval_every == 0 or done == cfg.steps:
            stats = {}  # the EMA generator (the evaluated one) and, beside it, the raw generator
            for prefix, net in (("eval_", trainer.ema), ("eval_raw_", trainer.generator)):
                samples, labels = draw(generator_sampler(cfg, net), task, cfg.eval_samples, cfg.seed + 1)
                stats.update({f"{prefix}{k}": v for k, v in quality(cfg, task, samples, labels).items()})
            run.log(step, images_seen=done * cfg.batch_size, **stats)
            bar.set_postfix({k: round(v, 4) for k, v in stats.items() if k.endswith(("energy_distance", "fid"))})
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            run.save_checkpoint({"trainer": trainer.state_dict(), "step": done, "seconds": seconds}, done)
    save_checkpoint(out / "generator.pt", {"model": trainer.ema.state_dict(), "num_classes": task.num_classes})
    save_checkpoint(out / "generator_raw.pt", {"model": trainer.generator.state_dict(), "num_classes": task.num_classes})
    history = [r for r in run.history() if "loss_gen" in r]
    return run.finish({
        "steps": cfg.steps,
        "final_loss_gen": history[-1]["loss_gen"] if history else float("nan"),
        "final_loss_fake": history[-1]["loss_fake"] if history else float("nan"),
        "train_seconds": seconds,
        "pretrain_seconds": pretrain_seconds,
        "images_seen": cfg.steps * cfg.batch_size,
    })


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, "Distil a diffusion teacher with Score identity Distillation (SiD).")
    cfg = load_config(Config, args.config, args.overrides)
    return train(cfg, args.out)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
