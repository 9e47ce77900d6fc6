"""The experiment's settings: one dataclass, loaded from configs/*.yaml with strict keys."""

from __future__ import annotations

import dataclasses

from papers.meddiffusion.eunomia import NEGATIVE_INDEX
from papers.meddiffusion.models import ATTENTION, ATTENTION_INPUT, AUGMENTERS, MODELS, STRUCTURES
from papers.meddiffusion.variants import VARIANTS

DATASETS = {"eunomia": ("gi_bleed",), "mimic3": ("mortality", "heart_failure")}


@dataclasses.dataclass
class Config:
    # data
    dataset: str = "eunomia"  # eunomia (synthetic OMOP, GI bleed) | mimic3 (demo subset or $MIMIC3_DIR)
    task: str = "gi_bleed"  # eunomia: gi_bleed; mimic3: mortality | heart_failure (new onset)
    data_root: str = ""  # MIMIC-III folder or Eunomia DuckDB folder; "" = the shared.data default
    negative_index: str = "matched"  # eunomia negatives' index date: matched | random_visit (see eunomia.py)
    min_visits: int = 2  # visits required before the index date
    max_visits: int = 20  # last visits kept (even: the U-Net halves the visit axis once)
    max_codes: int = 20  # codes kept per visit
    split_seed: int = 0  # fixes cohort sampling and the patient-level splits across model seeds
    val_fraction: float = 0.15  # official split 75/15/10
    test_fraction: float = 0.10
    train_fraction: float = 1.0  # share of the training patients used (scarce-data curve)
    # model
    model: str = "meddiffusion"  # meddiffusion | lstm | gru | transformer | retain | dipole
    augment: bool = True  # augmentation in training (Sec. 3.3)
    augmenter: str = "diffusion"  # diffusion (MedDiffusion's) | gan (the medGAN-style baseline)
    structure: str = "official"  # MedDiffusion only: official (plain LSTM predicts; attention feeds the augmenter)
    #                              | attended (the attended sequence feeds the predicting LSTM)
    attention: str = "stepwise"  # stepwise | fixed | none (MedDiffusion only; ablations)
    attention_input: str = "per_visit"  # per_visit (the paper's e_k) | first_visit (the official code's e_0)
    embed_dim: int = 256
    hidden_dim: int = 256
    denoiser_channels: int = 64
    dropout: float = 0.1
    diffusion_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    lambda_s: float = 0.5  # weight of CE on the synthetic sequence
    lambda_d: float = 0.1  # weight of the noise MSE
    # optimisation
    seed: int = 1234
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"  # adam (official: L2 decay) | adamw (decoupled); biases and norms never decayed
    weight_decay: float = 1e-3
    balanced: bool = False  # official option: training batches of 25% positives (BalancedBatchSampler)
    grad_clip: float = 1.0
    patience: int = 10  # early stopping on validation F1
    threads: int = 0  # torch CPU threads; 0 = torch's default
    device: str = "auto"  # auto | cpu | cuda | cuda:N (shared.accel.setup_training)
    precision: str = "auto"  # auto (bf16 on recent CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    micro_batch_size: int = 0  # rows per forward/backward; 0 = batch_size // processes (no accumulation)
    strategy: str = "ddp"  # gradients averaged over torchrun processes (ddp is the only one: the model is small)
    bootstrap_resamples: int = 1000  # test-set bootstrap for the 95% intervals
    # reproduction (reproduce.py)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1234, 2345, 3456])
    variants: list[str] = dataclasses.field(default_factory=lambda: ["MedDiffusion"])
    curve_variants: list[str] = dataclasses.field(default_factory=list)
    curve_fractions: list[float] = dataclasses.field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {list(DATASETS)}")
        if self.task not in DATASETS[self.dataset]:
            raise ValueError(f"dataset {self.dataset} has tasks {DATASETS[self.dataset]}, not {self.task!r}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {MODELS}")
        if self.structure not in STRUCTURES or self.augmenter not in AUGMENTERS:
            raise ValueError(f"structure must be one of {STRUCTURES} and augmenter one of {AUGMENTERS}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be adam or adamw, got {self.optimizer!r}")
        if self.balanced and not 1 <= int(self.batch_size * 0.25) < self.batch_size:
            raise ValueError(f"balanced batches need batch_size >= 4, got {self.batch_size}")
        if self.attention not in ATTENTION or self.attention_input not in ATTENTION_INPUT:
            raise ValueError(f"attention must be one of {ATTENTION}, attention_input one of {ATTENTION_INPUT}")
        if self.negative_index not in NEGATIVE_INDEX:
            raise ValueError(f"negative_index must be one of {NEGATIVE_INDEX}, got {self.negative_index!r}")
        unknown = [v for v in [*self.variants, *self.curve_variants] if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        if self.max_visits < 2 or self.max_visits % 2:
            raise ValueError(f"max_visits must be even and >= 2, got {self.max_visits}")
        for name in ("bootstrap_resamples", "max_codes", "embed_dim", "hidden_dim", "epochs", "batch_size", "diffusion_steps", "patience"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.denoiser_channels % 8 or self.denoiser_channels <= 0:
            raise ValueError(f"denoiser_channels must be a positive multiple of 8, got {self.denoiser_channels}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum to less than 1")
        if not 0 < self.train_fraction <= 1 or not all(0 < f <= 1 for f in self.curve_fractions):
            raise ValueError("train_fraction and curve_fractions must lie in (0, 1]")
        if self.lr <= 0 or self.lambda_s < 0 or self.lambda_d < 0:
            raise ValueError("lr must be positive and lambda_s, lambda_d non-negative")
        if self.strategy != "ddp":
            raise ValueError(f"strategy must be ddp (the model is small; fsdp is not supported), got {self.strategy!r}")
        if self.micro_batch_size < 0:
            raise ValueError(f"micro_batch_size must be >= 0, got {self.micro_batch_size}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
