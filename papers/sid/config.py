"""The run config: one SiD distillation of a 2-D mixture teacher (analytic score) or a small image EDM teacher."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class Config:
    task: Literal["toy", "image"] = "toy"
    seed: int = 0
    threads: int = 1  # torch CPU threads (1 is fastest on the shared 2-core box); 0 keeps torch default
    # where and how train.py runs (shared.accel.setup_training; torchrun for several processes)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA sm>=8, fp16 older CUDA, fp32 CPU) | bf16 | fp16 | fp32
    micro_batch_size: int = 0  # rows per forward/backward on one process (0: the whole per-process batch)
    strategy: str = "ddp"  # only ddp: both nets stay bare modules whose gradients are all-reduced
    # data / teacher
    mixture: str = "ring8"  # shared.data toy2d preset (task=toy)
    dataset: str = "mnist"  # mnist | fashion_mnist (task=image)
    train_subset: int = 0  # images used to train the image teacher; 0 = all
    conditional: bool = False
    label_dropout: float = 0.1  # conditions blanked when training conditional nets (SiD-LSG: 10%)
    sigma_data: float = 0.5  # EDM preconditioning (Karras et al. 2022, Table 1)
    width: int = 128  # MLP width (toy) or base channels of the small U-Net (image)
    pretrain_steps: int = 2000  # EDM training of the network that initialises G and f_psi (and is the image teacher)
    pretrain_batch: int = 256
    pretrain_lr: float = 1e-3
    pretrain_ema_halflife_kimg: float = 500.0  # EMA of the pretrained net (EDM default; the ramp-up below governs short runs)
    teacher_seed: int = -1  # seed of the teacher / init pretraining; -1 = seed (set it to share one teacher across seeds)
    toy_teacher: Literal["exact", "mlp"] = "exact"  # 2-D: the analytic mixture denoiser, or the EDM-trained MLP
    random_teacher: bool = False  # speed/memory checks only (gpu_check): untrained U-Net teacher, random images
    teacher_cache: bool = True  # image teachers are kept under data_home()/sid and reused
    heun_steps: int = 18  # EDM Heun sampler: 18 steps = 35 evaluations
    # SiD (Zhou et al. 2024, Sec. 4 and official run_sid.sh)
    alpha: float = 1.2
    sigma_init: float = 2.5
    tmax: int = 800
    loss_scale: float = 100.0  # "lsg": generator loss scaled by lsg / batch
    gen_steps: int = 1  # K of few-step SiD (1 = one-step)
    guidance: Literal["none", "cfg", "lsg", "zero_cfg", "anti_cfg"] = "none"
    teacher_cfg: float = 2.0  # CFG scale of the teacher when guidance = cfg; the one LSG scale kappa when = lsg
    anti_cfg: float = -1.0  # guidance scale of the fake score network when guidance = anti_cfg
    steps: int = 2000  # alternating (fake, generator) updates
    batch_size: int = 256
    lr: float = 1e-4
    adam_eps: float = 1e-8
    ema_halflife_kimg: float = 20.0
    ema_rampup_ratio: float = 0.05  # EDM/SiD: half-life <= ratio * images seen (0 = no ramp-up)
    # Diffusion-GAN (SiDA / few-step SiD code): a discriminator on f_psi's encoder, real data vs generator mixture
    gan: bool = False
    gan_start_kimg: float = 0.0  # generator uses 0.5 SiD + 0.5 GAN once this many kimg have been seen
    # bookkeeping
    eval_every: int = 200
    eval_samples: int = 2000  # 0: train.py skips the evaluations
    checkpoint_every: int = 500
    log_every: int = 50
    bench_batch: int = 256
    bench_repeats: int = 3
    # reproduce.py: which 2-D variants (task=toy only) to distil, and an optional image config run after them
    toy_variants: list[str] = dataclasses.field(default_factory=lambda: ["alpha1.0", "alpha1.2"])
    image_config: str = ""
    # reproduce.py on an image config: which SiD runs of its teacher (uncond; or cond / cfg / zero_cfg / anti_cfg)
    image_variants: list[str] = dataclasses.field(default_factory=lambda: ["uncond"])

    def __post_init__(self) -> None:
        if self.gen_steps < 1:
            raise ValueError(f"gen_steps must be >= 1, got {self.gen_steps}")
        if self.guidance != "none" and not self.conditional:
            raise ValueError(f"guidance={self.guidance!r} needs conditional: true")
        if not 0 < self.sigma_init:
            raise ValueError("sigma_init must be positive")
        if not 0 < self.tmax <= 1000:
            raise ValueError(f"tmax must be in (0, 1000], got {self.tmax}")
        if self.ema_rampup_ratio < 0 or self.pretrain_ema_halflife_kimg < 0:
            raise ValueError("ema_rampup_ratio and pretrain_ema_halflife_kimg must be >= 0")
        if self.toy_teacher == "mlp" and self.task != "toy":
            raise ValueError("toy_teacher=mlp is for task=toy (image teachers are always EDM-trained networks)")
        if self.strategy != "ddp":
            raise ValueError(f"strategy must be ddp (SiD all-reduces two bare nets), got {self.strategy!r}")
        if self.random_teacher and (self.task != "image" or self.eval_samples or self.gan):
            raise ValueError("random_teacher is for speed checks of task=image with eval_samples=0 and gan=false")
        if self.task == "image" and self.dataset not in ("mnist", "fashion_mnist"):
            raise ValueError(f"image task supports mnist and fashion_mnist, got {self.dataset!r}")
