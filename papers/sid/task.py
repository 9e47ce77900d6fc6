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
from papers.sid.edm import PrecondDenoiser, denoising_loss, ema_beta, ema_update, sample_training_sigma
from papers.sid.mixture import MixtureDenoiser
from papers.sid.nets import MLPNet, SmallUNet
from shared.accel import TrainContext, setup_training
from shared.data import data_home, load
from shared.data.torch_adapter import images_to_float
from shared.runs import UserError, load_checkpoint, save_checkpoint


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


def pretrain_context(cfg: Config, ctx: TrainContext | None = None) -> TrainContext:
    """The run's training context resized to the pretraining batch (one CPU process in fp32 when ``ctx`` is None)."""
    if ctx is None:
        return setup_training("cpu", "fp32", global_batch=cfg.pretrain_batch)
    if cfg.pretrain_batch % ctx.world_size:
        raise UserError(f"pretrain_batch {cfg.pretrain_batch} does not split evenly over {ctx.world_size} processes")
    per_rank = cfg.pretrain_batch // ctx.world_size
    micro = min(cfg.micro_batch_size or per_rank, per_rank)
    return dataclasses.replace(ctx, global_batch=cfg.pretrain_batch, micro_batch=micro)


def pretrain(cfg: Config, model: nn.Module, data: torch.Tensor, labels: torch.Tensor | None, desc: str,
             ctx: TrainContext | None = None) -> nn.Module:
    """Plain EDM training (Karras et al. 2022, eq. 2/8) with 10% of labels blanked for classifier-free guidance;
    returns the EMA of the weights on the CPU (EDM training loop: half-life pretrain_ema_halflife_kimg, ramp-up
    ema_rampup_ratio; half-life 0 returns the raw weights). Each step's global batch is drawn from one seeded
    generator and goes through ``ctx.train_step`` (micro-batches, several processes)."""
    ctx = pretrain_context(cfg, ctx)
    gen = torch.Generator().manual_seed(teacher_seed(cfg) + 17)
    ema = copy.deepcopy(model).requires_grad_(False).to(ctx.device)
    model = ctx.prepare(model, wrap=False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)
    num_classes = model.net.labels.num_classes

    def loss_fn(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return denoising_loss(net, batch["x"], batch["sigma"], batch["noise"], cfg.sigma_data, batch.get("y"))

    for step in tqdm(range(cfg.pretrain_steps), desc=desc, leave=False, mininterval=5, disable=not ctx.is_main):
        idx = torch.randint(0, len(data), (cfg.pretrain_batch,), generator=gen)
        batch = {"x": data[idx]}
        if labels is not None and num_classes:
            drop = torch.rand(len(idx), generator=gen) < cfg.label_dropout
            batch["y"] = torch.where(drop, torch.full_like(labels[idx], num_classes), labels[idx])
        batch["sigma"] = sample_training_sigma(len(idx), gen)
        batch["noise"] = torch.randn(batch["x"].shape, generator=gen)
        ctx.train_step(model, opt, batch, loss_fn)
        ema_update(ema, model, ema_beta(cfg.pretrain_batch, cfg.pretrain_ema_halflife_kimg, step * cfg.pretrain_batch,
                                        cfg.ema_rampup_ratio))
    return ema.cpu().eval()


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


def _save_shared(path: Path, state: dict, ctx: TrainContext | None) -> None:
    """Write a file once (rank 0) and let every process wait for it."""
    if ctx is None or ctx.is_main:
        save_checkpoint(path, state)
    if ctx is not None:
        ctx.barrier()


def build_task(cfg: Config, out: str | Path, ctx: TrainContext | None = None) -> Task:
    """Toy: exact mixture teacher, MLP init pretrained on the mixture. Image: a small EDM U-Net teacher (cached).
    With random_teacher (speed checks only): image teacher and init are an untrained U-Net, data random images."""
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
            init = pretrain(cfg, init, data, labels, "pretrain init MLP", ctx)
            _save_shared(init_file, {"model": init.state_dict()}, ctx)
        exact = MixtureDenoiser(toy["mixture"])
        teacher = init.eval() if cfg.toy_teacher == "mlp" else exact
        return Task(teacher, init.eval(), num_classes, (2,), data, labels, toy["mixture"], exact)
    num_classes = 10 if cfg.conditional else 0
    if cfg.random_teacher:
        gen = torch.Generator().manual_seed(teacher_seed(cfg))
        data = torch.rand((1024, 1, 28, 28), generator=gen) * 2 - 1
        labels = torch.randint(0, 10, (1024,), generator=gen)
        teacher = make_network(cfg, num_classes)
        return Task(teacher.eval(), teacher, num_classes, (1, 28, 28), data, labels)
    train = load(cfg.dataset, split="train")
    images, labels = train["images"], train["labels"]
    if cfg.train_subset:
        keep = np.random.default_rng(cfg.seed).permutation(len(images))[: cfg.train_subset]
        images, labels = images[keep], labels[keep]
    data, labels = images_to_float(images), torch.from_numpy(labels)
    teacher = make_network(cfg, num_classes)
    path = teacher_path(cfg, out)
    if path.exists():
        teacher.load_state_dict(load_checkpoint(path)["model"])
    else:
        teacher = pretrain(cfg, teacher, data, labels, f"EDM teacher {cfg.dataset}", ctx)
        _save_shared(path, {"model": teacher.state_dict()}, ctx)
    return Task(teacher.eval(), teacher, num_classes, (1, 28, 28), data, labels)
