"""Evaluate a SiD run: the EMA generator (and the raw generator) against the teacher's 35-evaluation Heun sampler
(2-D: the exact mixture's and the EDM-trained MLP's), with sample plots.
``python -m papers.sid.evaluate --config FILE --out RUN_DIR`` (RUN_DIR as written by train.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from papers.sid.config import Config
from papers.sid.edm import heun_evaluations
from papers.sid.metrics import Sampler, draw, generator_sampler, quality, teacher_sampler
from papers.sid.task import Task, build_task, make_network, teacher_path
from shared.runs import (
    CheckpointError,
    entrypoint,
    load_checkpoint,
    load_config,
    parse_run_args,
    save_checkpoint,
)


def load_generator(cfg: Config, out: Path, num_classes: int, name: str = "generator.pt") -> torch.nn.Module:
    path = out / name
    if not path.exists():
        raise CheckpointError(f"no trained generator at {path}; run papers.sid.train with the same --out first")
    model = make_network(cfg, num_classes)
    model.load_state_dict(load_checkpoint(path)["model"])
    return model.eval()


def timed_draw(sampler: Sampler, task: Task, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray | None, float]:
    start = time.perf_counter()
    samples, labels = draw(sampler, task, n, seed)
    return samples, labels, n / (time.perf_counter() - start)


def teacher_draw(cfg: Config, task: Task, out: Path, sampler: Sampler) -> tuple[torch.Tensor, np.ndarray | None, float]:
    """The teacher's Heun samples; for cached image teachers they are kept beside the teacher (keyed by the teacher,
    its CFG scale, Heun steps, sample count and seed) so that SiD variants of one teacher share one draw."""
    if cfg.task != "image" or not cfg.teacher_cache:
        return timed_draw(sampler, task, cfg.eval_samples, cfg.seed + 1)
    scale = cfg.teacher_cfg if cfg.guidance in ("cfg", "lsg") else 1.0
    path = teacher_path(cfg, out)
    path = path.with_name(f"{path.stem}-heun{cfg.heun_steps}-cfg{scale:g}-n{cfg.eval_samples}-seed{cfg.seed + 1}.pt")
    if path.exists():
        cached = load_checkpoint(path)
        return cached["samples"], cached["labels"], cached["samples_per_s"]
    samples, labels, rate = timed_draw(sampler, task, cfg.eval_samples, cfg.seed + 1)
    save_checkpoint(path, {"samples": samples, "labels": labels, "samples_per_s": rate})
    return samples, labels, rate


def plot_samples(path: Path, cfg: Config, panels: dict[str, tuple[torch.Tensor, np.ndarray | None]], task: Task) -> None:
    """Scatter plots (toy, coloured by class when conditional) or image grids (8x8; 10x10 with one class per column
    when conditional), one panel per sampler."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (name, (x, labels)) in zip(axes[0], panels.items()):
        if cfg.task == "toy":
            ax.scatter(task.mixture.means[:, 0], task.mixture.means[:, 1], c="red", marker="x", s=40)
            colour = {"c": labels, "cmap": "tab10"} if labels is not None else {"c": "tab:blue"}
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, **colour)
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
        else:
            side = task.num_classes or 8  # labels cycle through the classes: column c holds class c
            tiles = torch.full((side * side, 28, 28), -1.0)
            tiles[: min(side * side, len(x))] = x[: side * side, 0].clamp(-1, 1)
            grid = tiles.reshape(side, side, 28, 28).permute(0, 2, 1, 3).reshape(28 * side, 28 * side)
            ax.imshow(grid.numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.axis("off")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate(cfg: Config, out: str | Path, teacher: bool = True) -> dict[str, Any]:
    out = Path(out)
    torch.manual_seed(cfg.seed)
    task = build_task(cfg, out)
    model = load_generator(cfg, out, task.num_classes)
    nfe = heun_evaluations(cfg.heun_steps)
    samplers = {f"SiD {cfg.gen_steps}-step": (generator_sampler(cfg, model), cfg.gen_steps)}
    if (out / "generator_raw.pt").exists():  # the generator's own weights beside its EMA
        raw = load_generator(cfg, out, task.num_classes, "generator_raw.pt")
        samplers[f"SiD {cfg.gen_steps}-step raw"] = (generator_sampler(cfg, raw), cfg.gen_steps)
    if teacher and cfg.task == "toy":  # 2-D: both the distilled teacher and the other one (exact / EDM-trained MLP)
        samplers[f"exact teacher Heun {nfe} NFE"] = (teacher_sampler(cfg, task, task.exact_teacher), nfe)
        samplers[f"MLP teacher Heun {nfe} NFE"] = (teacher_sampler(cfg, task, task.init), nfe)
    elif teacher:
        samplers[f"teacher Heun {nfe} NFE"] = (teacher_sampler(cfg, task), nfe)
    rows, panels = [], {}
    for name, (sampler, nfe) in samplers.items():
        if name.startswith("SiD"):
            samples, labels, rate = timed_draw(sampler, task, cfg.eval_samples, cfg.seed + 1)
        else:
            samples, labels, rate = teacher_draw(cfg, task, out, sampler)
        rows.append({"sampler": name, "nfe": nfe, "samples_per_s": rate, **quality(cfg, task, samples, labels)})
        panels[name] = (samples, labels)
    plot_samples(out / "samples.png", cfg, panels, task)
    result = {"task": cfg.task, "rows": rows}
    if cfg.task == "image":
        from papers.sid.metrics import image_feature_net

        result["feature_net"] = image_feature_net(cfg).name
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, "Evaluate a SiD generator against its teacher.")
    cfg = load_config(Config, args.config, args.overrides)
    return evaluate(cfg, args.out)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
