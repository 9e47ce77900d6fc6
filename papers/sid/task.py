"""Build a run's teacher, the network that initialises G and f_psi, and the reference data, for toy or image."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from papers.sid.config import Config
from papers.sid.edm import PrecondDenoiser, edm_loss, ema_beta, ema_update
from papers.sid.mixture import MixtureDenoiser
from papers.sid.nets import MLPNet, SmallUNet
from shared.data import data_home, load
from shared.data.torch_adapter import images_to_float
from shared.runs import load_checkpoint, save_checkpoint


@dataclasses.dataclass
class Task:
    teacher: nn.Module
    init: nn.Module  # initialises G and f_psi (2-D: the EDM-trained MLP; image: the teacher)
    num_classes: int
    shape: tuple[int, ...]
    data: torch.Tensor  # training data (toy: true mixture samples; image: train images in [-1, 1])
    labels: torch.Tensor
    mixture: object | None = None
    exact_teacher: nn.Module | None = None  # 2-D: the analytic mixture denoiser (a second reference sampler)


def make_network(cfg: Config, num_classes: int) -> PrecondDenoiser:
    net = MLPNet(2, cfg.width, num_classes) if cfg.task == "toy" else SmallUNet(cfg.width, num_classes)
    return PrecondDenoiser(net, cfg.sigma_data)


def teacher_seed(cfg: Config) -> int:
    return cfg.seed if cfg.teacher_seed < 0 else cfg.teacher_seed


def pretrain(cfg: Config, model: nn.Module, data: torch.Tensor, labels: torch.Tensor | None, desc: str) -> nn.Module:
    """Plain EDM training (Karras et al. 2022, eq. 2/8) with 10% of labels blanked for classifier-free guidance;
    returns the EMA of the weights (EDM training loop: half-life pretrain_ema_halflife_kimg, ramp-up ema_rampup_ratio;
    half-life 0 returns the raw weights)."""
    gen = torch.Generator().manual_seed(teacher_seed(cfg) + 17)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)
    num_classes = model.net.labels.num_classes
    for step in tqdm(range(cfg.pretrain_steps), desc=desc, leave=False, mininterval=5):
        idx = torch.randint(0, len(data), (cfg.pretrain_batch,), generator=gen)
        y = None
        if labels is not None and num_classes:
            y = labels[idx]
            drop = torch.rand(len(y), generator=gen) < cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, num_classes), y)
        loss = edm_loss(model, data[idx], cfg.sigma_data, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, ema_beta(cfg.pretrain_batch, cfg.pretrain_ema_halflife_kimg, step * cfg.pretrain_batch,
                                        cfg.ema_rampup_ratio))
    return ema.eval()


def teacher_path(cfg: Config, out: Path) -> Path:
    """Image teachers are keyed by everything that shapes them; cached under data_home()/sid when asked."""
    keys = {k: getattr(cfg, k) for k in ("dataset", "train_subset", "conditional", "label_dropout", "sigma_data",
                                         "width", "pretrain_steps", "pretrain_batch", "pretrain_lr")}
    keys["seed"] = teacher_seed(cfg)
    if cfg.pretrain_ema_halflife_kimg > 0:  # teachers cached before the EMA keep their old keys
        keys["ema"] = [cfg.pretrain_ema_halflife_kimg, cfg.ema_rampup_ratio]
    digest = hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:10]
    root = data_home() / "sid" if cfg.teacher_cache else out
    return root / f"teacher-{cfg.dataset}-{'cond' if cfg.conditional else 'uncond'}-{digest}.pt"


def build_task(cfg: Config, out: str | Path) -> Task:
    """Toy: exact mixture teacher, MLP init pretrained on the mixture. Image: a small EDM U-Net teacher (cached)."""
    out = Path(out)
    torch.manual_seed(teacher_seed(cfg))
    if cfg.task == "toy":
        toy = load("toy2d", name=cfg.mixture, n=50_000, seed=teacher_seed(cfg))
        data, labels = torch.from_numpy(toy["points"]), torch.from_numpy(toy["components"])
        num_classes = len(toy["mixture"].weights) if cfg.conditional else 0
        init_file = out / "init.pt"
        init = make_network(cfg, num_classes)
        if init_file.exists():
            init.load_state_dict(load_checkpoint(init_file)["model"])
        else:
            init = pretrain(cfg, init, data, labels, "pretrain init MLP")
            save_checkpoint(init_file, {"model": init.state_dict()})
        exact = MixtureDenoiser(toy["mixture"])
        teacher = init.eval() if cfg.toy_teacher == "mlp" else exact
        return Task(teacher, init.eval(), num_classes, (2,), data, labels, toy["mixture"], exact)
    train = load(cfg.dataset, split="train")
    images, labels = train["images"], train["labels"]
    if cfg.train_subset:
        keep = np.random.default_rng(cfg.seed).permutation(len(images))[: cfg.train_subset]
        images, labels = images[keep], labels[keep]
    data, labels = images_to_float(images), torch.from_numpy(labels)
    num_classes = 10 if cfg.conditional else 0
    teacher = make_network(cfg, num_classes)
    path = teacher_path(cfg, out)
    if path.exists():
        teacher.load_state_dict(load_checkpoint(path)["model"])
    else:
        teacher = pretrain(cfg, teacher, data, labels, f"EDM teacher {cfg.dataset}")
        save_checkpoint(path, {"model": teacher.state_dict()})
    return Task(teacher.eval(), teacher, num_classes, (1, 28, 28), data, labels)
