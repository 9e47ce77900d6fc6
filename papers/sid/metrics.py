"""Sample quality of a sampler (one-step/few-step generator or the teacher's Heun sampler) for toy or image runs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from papers.sid.config import Config
from papers.sid.edm import heun_sample
from papers.sid.mixture import sample_statistics
from papers.sid.sid import generate
from papers.sid.task import Task
from shared.metrics import FeatureStats, frechet_distance

Sampler = Callable[[torch.Tensor, "torch.Tensor | None", torch.Generator], torch.Tensor]


def generator_sampler(cfg: Config, model: torch.nn.Module) -> Sampler:
    """The (few-step) generator on its own device; samples come back on the CPU."""
    device = next(model.parameters()).device

    def sample(z: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
        y = y.to(device) if y is not None else None
        return generate(model, z.to(device), y, cfg.sigma_init, cfg.gen_steps, gen).cpu()

    return sample


def teacher_sampler(cfg: Config, task: Task, teacher: torch.nn.Module | None = None) -> Sampler:
    """The deterministic Heun sampler (35 evaluations for 18 steps) of the teacher (or of another denoiser, e.g.
    the exact 2-D mixture), CFG included when asked."""
    from papers.sid.sid import guided

    scale = cfg.teacher_cfg if cfg.guidance in ("cfg", "lsg") else 1.0
    teacher = task.teacher if teacher is None else teacher

    def denoise(x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return guided(teacher, x, sigma.reshape(-1).expand(len(x)), y, scale, task.num_classes)

    return lambda z, y, gen: heun_sample(denoise, z, y, cfg.heun_steps)


@torch.no_grad()
def draw(sampler: Sampler, task: Task, n: int, seed: int, batch: int = 1000) -> tuple[torch.Tensor, np.ndarray | None]:
    """n samples (labels cycle through the classes when the task is conditional), seeded."""
    gen = torch.Generator().manual_seed(seed)
    outs, labels = [], (np.arange(n) % task.num_classes) if task.num_classes else None
    for start in range(0, n, batch):
        m = min(batch, n - start)
        z = torch.randn((m, *task.shape), generator=gen)
        y = torch.from_numpy(labels[start : start + m]) if labels is not None else None
        outs.append(sampler(z, y, gen).float())
    return torch.cat(outs), labels


def image_feature_net(cfg: Config):
    from shared.metrics.feature_net import image_feature_network

    return image_feature_network(cfg.dataset)


def quality(cfg: Config, task: Task, samples: torch.Tensor, labels: np.ndarray | None) -> dict[str, float]:
    """Toy: energy distance, MMD, mode coverage (+ class accuracy, within-class spread). Image: FID with the repo's
    feature network (+ class accuracy, within-class feature spread relative to real images of the class)."""
    if cfg.task == "toy":
        reference = task.mixture.sample(len(samples), seed=cfg.seed + 99)[0]
        return sample_statistics(samples.numpy(), reference, task.mixture, labels)
    net = image_feature_net(cfg)
    x = samples.clamp(-1, 1)
    feats = net.features(x)
    stats = {"fid": frechet_distance(FeatureStats.from_features(feats, net.name), net.reference_stats("test"))}
    if labels is not None:
        stats["class_accuracy"] = float((net.predict(x) == labels).mean())
        real = net.features(task.data[:5000])
        real_labels = task.labels[:5000].numpy()
        ratios = [np.sqrt(feats[labels == c].var(0).sum() / real[real_labels == c].var(0).sum())
                  for c in range(task.num_classes) if (labels == c).sum() > 1 and (real_labels == c).sum() > 1]
        stats["within_class_diversity"] = float(np.mean(ratios))
    return stats
