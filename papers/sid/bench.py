"""Benchmark: one-step (or K-step) SiD generator throughput against the teacher's 35-evaluation Heun sampler, and the time of
one SiD training round (fake-score + generator update). ``python -m papers.sid.bench --config FILE --out DIR``.
Weights are random (speed does not depend on them); the toy task's teacher is the exact mixture denoiser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from papers.sid.config import Config
from papers.sid.edm import heun_evaluations, heun_sample
from papers.sid.mixture import MixtureDenoiser
from papers.sid.sid import SiDTrainer, generate
from papers.sid.task import make_network
from shared.accel import Timer, pick_device, seed_everything, set_torch_threads
from shared.data import load
from shared.runs import entrypoint, load_config, parse_run_args


def best_seconds(fn: Any, repeats: int, device: torch.device) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        with Timer(device) as t:
            fn()
        times.append(t.seconds)
    return min(times)


def bench(cfg: Config, out: str | Path, device_name: str = "auto") -> dict[str, Any]:
    seed_everything(cfg.seed)
    set_torch_threads(cfg.threads)
    device = pick_device(device_name)
    shape = (2,) if cfg.task == "toy" else (1, 28, 28)
    if cfg.task == "toy":
        teacher = MixtureDenoiser(load("toy2d", name=cfg.mixture, n=10, seed=0)["mixture"])
    else:
        teacher = make_network(cfg, 0)
    generator = make_network(cfg, 0)
    teacher, generator = teacher.to(device).eval(), generator.to(device).eval()
    z = torch.randn((cfg.bench_batch, *shape), device=device)
    with torch.no_grad():
        gen_s = best_seconds(lambda: generate(generator, z, None, cfg.sigma_init, cfg.gen_steps), cfg.bench_repeats, device)
        teacher_s = best_seconds(lambda: heun_sample(teacher, z, None, cfg.heun_steps), cfg.bench_repeats, device)
    trainer = SiDTrainer(cfg, teacher, make_network(cfg, 0), 0, shape, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    step_s = best_seconds(lambda: trainer.round(gen, 0), cfg.bench_repeats, device)
    result = {
        "task": cfg.task,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "batch": cfg.bench_batch,
        "generator_steps": cfg.gen_steps,
        "teacher_nfe": heun_evaluations(cfg.heun_steps),
        "generator_samples_per_s": cfg.bench_batch / gen_s,
        "teacher_samples_per_s": cfg.bench_batch / teacher_s,
        "speedup": teacher_s / gen_s,
        "train_round_seconds": step_s,
        "train_batch": cfg.batch_size,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_{cfg.task}_{device.type}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Bench the config's task, then its ``image_config`` (the small U-Net) when it names one."""
    args = parse_run_args(argv, "Benchmark SiD one-step sampling against the teacher's Heun sampler.")
    cfg = load_config(Config, args.config, args.overrides)
    result = bench(cfg, args.out)
    if cfg.image_config:
        result = {cfg.task: result, "image": bench(load_config(Config, cfg.image_config), args.out)}
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
