"""The experiment's settings: one dataclass, loaded from configs/*.yaml with strict keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

FEATURE_NET_DATASETS = ("mnist", "fashion_mnist")  # data sets the repo's FID feature network covers (28x28 grey)


@dataclasses.dataclass
class Config:
    """Backbone, the two training stages (baseline, then DeeDiff fine-tuning), sampling and the evaluation sweep."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (train: under torchrun each process takes cuda:LOCAL_RANK)
    precision: str = "auto"  # train: auto (bf16 on CUDA sm>=8, fp16 on older CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    micro_batch_size: int = 0  # train: rows per forward pass on each process; 0 = the whole per-process batch
    strategy: str = "ddp"  # train under torchrun: ddp | fsdp (CUDA only)
    threads: int = 0  # torch CPU threads; 0 = torch's default. 1 is much faster on a CPU other jobs keep busy
    # where trained weights go: "" = <out>/weights; "@cache/NAME" = data_home()/deediff/NAME/<config hash>, outside
    # the repo and shared by every run of the same resolved config (reproduce, then bench), never by another config
    weights_dir: str = ""
    # data: a name known to shared.data.load (mnist, fashion_mnist; cifar10 / celeba64 where the user has them),
    # or synthetic (seeded noise images, for timing where the real data are absent)
    dataset: str = "fashion_mnist"
    train_subset: int = 0  # 0 = the whole train split
    data_root: str = ""  # celeba64 only: the folder of img_align_celeba[.zip]; "" = $CELEBA_DIR or the data home
    image_size: int = 28  # 14 on MNIST / Fashion-MNIST: 2x2 average-pooled images (samples are upsampled to score)
    channels: int = 1
    # U-ViT (Bao et al. 2023); depth counts in+out blocks, so the net has depth + 1 layers (U-ViT-S: 12 -> 13)
    patch_size: int = 4
    embed_dim: int = 192
    depth: int = 8
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10  # 0 = unconditional
    mlp_time_embed: bool = False
    conv_out: bool = True
    long_skip: bool = True  # U-ViT's long skips Linear([x, skip]) into the out-blocks (its ablation turns them off)
    # DeeDiff uncertainty estimation module: the official code feeds tokens only, the paper text [tokens, t]
    uem_timestep_aware: bool = False
    uem_weight: float = 1.0  # lambda in front of L_u (official: 1)
    layerwise_weight: float = 1.0  # beta in front of L_UAL (official: 1)
    # VP-SDE noise schedule of U-ViT / DeeDiff (linear beta in [beta_min, beta_max], t in [0, 1])
    beta_min: float = 0.1
    beta_max: float = 20.0
    # optimisation (both stages); with ``finetune_from`` (a baseline.pt) the baseline stage is skipped
    finetune_from: str = ""
    # a search config (search.py; path relative to the repo root or this config's folder): reproduce and bench run
    # it (its checksummed weights are reused from the cache when present) and fine-tune its chosen baseline
    finetune_from_search: str = ""
    baseline_steps: int = 1000
    finetune_steps: int = 500
    batch_size: int = 128
    lr: float = 4e-4
    finetune_lr: float = 2e-4
    finetune_warmup_steps: int = 100  # the fine-tuning stage's linear lr warm-up (AdaDiff: 2500 CIFAR-10, 5000 CelebA)
    # > 0: score the full-depth EMA model every N fine-tuning steps (class accuracy and FID of finetune_eval_samples
    # samples against the TRAINING split) and keep the lowest-FID snapshot as deediff.pt (AdaDiff train.py: FID every
    # 5000 steps, best kept); 0: deediff.pt is the last EMA model
    finetune_eval_every: int = 0
    finetune_eval_samples: int = 200
    weight_decay: float = 0.03
    adam_beta1: float = 0.99
    adam_beta2: float = 0.999
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 20
    # sampling and evaluation
    sampler: Literal["euler_maruyama", "ddim"] = "ddim"
    sample_steps: int = 25
    eval_samples: int = 500
    eval_batch_size: int = 250
    thresholds: list[float] = dataclasses.field(default_factory=lambda: [0.8, 0.85, 0.9])
    patience: int = 2  # triggers needed in the first half of the net (official: exit at the second one)
    bootstrap: int = 200  # resamples for the 95% intervals on every FID and FID gap; 0 = none
    # benchmark
    bench_batch_sizes: list[int] = dataclasses.field(default_factory=lambda: [1, 64])
    bench_threshold: float = 0.9
    bench_repeats: int = 20
    # reproduce.py also fine-tunes a timestep-aware-UEM DeeDiff from the same baseline and compares the two
    compare_timestep_aware_uem: bool = False

    @property
    def n_layers(self) -> int:
        return self.depth + 1

    def weights_path(self, out: str | Path) -> Path:
        """The folder of baseline.pt and deediff.pt for a run writing to ``out``."""
        if not self.weights_dir:
            return Path(out) / "weights"
        if self.weights_dir.startswith("@cache/"):
            from shared.data import data_home
            from shared.runs.config import to_dict
            from shared.runs.rundir import config_digest

            return data_home() / "deediff" / self.weights_dir.removeprefix("@cache/") / config_digest(to_dict(self))[:12]
        return Path(self.weights_dir)

    def __post_init__(self) -> None:
        if self.depth < 2 or self.depth % 2:
            raise ValueError(f"depth must be an even number >= 2 (in + out blocks; U-ViT-S uses 12), got {self.depth}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        for name in ("baseline_steps", "finetune_steps", "sample_steps", "eval_samples", "eval_batch_size"):
            if getattr(self, name) < 0 or (name not in ("baseline_steps", "finetune_steps") and getattr(self, name) == 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        sources = bool(self.finetune_from) + bool(self.finetune_from_search)
        if (self.baseline_steps > 0 and sources) or (self.baseline_steps == 0 and sources != 1):
            raise ValueError("set baseline_steps > 0 to train a baseline, or baseline_steps=0 with one of finetune_from "
                             f"(a baseline.pt) or finetune_from_search (a search config); got baseline_steps="
                             f"{self.baseline_steps}, finetune_from={self.finetune_from!r}, "
                             f"finetune_from_search={self.finetune_from_search!r}")
        if self.finetune_eval_every < 0 or self.finetune_eval_samples < 2 or self.finetune_warmup_steps < 0:
            raise ValueError("finetune_eval_every and finetune_warmup_steps must be >= 0 and finetune_eval_samples >= 2")
        if self.finetune_eval_every and self.dataset not in FEATURE_NET_DATASETS:
            raise ValueError(f"finetune_eval_every picks the checkpoint by FID, which needs the repo's feature network "
                             f"({', '.join(FEATURE_NET_DATASETS)}); {self.dataset} has none: set finetune_eval_every: 0")
        if self.batch_size <= 0 or self.lr <= 0 or self.finetune_lr <= 0:
            raise ValueError("batch_size, lr and finetune_lr must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.beta_min < self.beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {self.beta_min}, {self.beta_max}")
        if any(not 0.0 < t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds are certainties in (0, 1], got {self.thresholds}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0 (0 = no intervals), got {self.bootstrap}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = torch's default), got {self.threads}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {self.num_classes}")
