"""Experiment settings for ModuleFormer and its dense baselines (one YAML per experiment in configs/)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from papers.moduleformer.configuration import ModuleFormerConfig
from shared.accel import set_torch_threads

Variant = Literal["moduleformer", "dense_active", "dense_total"]


@dataclasses.dataclass
class ModelConfig:
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    att_hidden: int = 128
    n_att_experts: int = 8
    k_att: int = 2
    ffd_hidden: int = 256
    n_mlp_experts: int = 16
    k_mlp: int = 2
    gating_size: int = 64
    aux_loss_weight: float = 0.01
    aux_loss_type: str = "mi"  # "mi" (pretraining, Sec. 3.3) or "load_concentration" (fine-tuning, Sec. 3.3)
    sample_topk: int = 0  # > 0: sample this many of the k experts in training (official gate option)
    dropout: float = 0.0


@dataclasses.dataclass
class Config:
    seed: int = 0
    threads: int = 0  # > 0: torch.set_num_threads(threads); 1 avoids thread thrashing on a shared CPU
    device: str = "auto"  # shared.accel.setup_training: auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA sm>=8, fp32 on CPU) | bf16 | fp16 | fp32
    micro_batch_size: int = 0  # rows per forward pass (gradient accumulation); 0 = batch_size // world_size
    strategy: str = "ddp"  # ddp | fsdp under torchrun
    data: str = "text"  # text (the offline corpora) | synthetic (uniform random tokens, for GPU shape checks)
    variant: Variant = "moduleformer"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    vocab_size: int = 4096
    tokenizer_chars: int = 3_000_000
    corpus_chars: int = 0  # > 0: use only the first this many characters of each split (smoke runs)
    train_corpora: list[str] = dataclasses.field(default_factory=lambda: ["shakespeare", "austen"])
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    eval_tokens: int = 50_000  # per corpus and split, as windows spread evenly over all its held-out documents
    checkpoint_every: int = 200
    gen_tokens: int = 64
    extend_corpus: str = "python_docs"
    extend_steps: int = 300
    new_experts: int = 4
    prune_min_share: float = 0.5
    extend_lr: float = 0.0  # learning rate of the extension runs; 0 = the variant's own lr
    lr_grid: list[float] = dataclasses.field(default_factory=list)  # reproduce: lrs tried per variant on validation
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])  # reproduce: seeds at the chosen lr

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.seq_len <= 1:
            raise ValueError("steps and batch_size must be positive and seq_len > 1")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.lr <= 0 or any(lr <= 0 for lr in self.lr_grid):
            raise ValueError(f"learning rates must be positive, got lr={self.lr}, lr_grid={self.lr_grid}")
        if self.data not in ("text", "synthetic"):
            raise ValueError(f"data must be 'text' or 'synthetic', got {self.data!r}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")


def model_config(cfg: Config, vocab_size: int, eos_id: int) -> ModuleFormerConfig:
    """The ModuleFormerConfig of a variant. Dense baselines keep the architecture but activate every module:
    dense_active has as many modules as the MoE activates per token (same active parameters), dense_total as
    many as the MoE has in all (same total parameters)."""
    m = dataclasses.asdict(cfg.model)
    if cfg.variant == "dense_active":
        m.update(n_att_experts=m["k_att"], n_mlp_experts=m["k_mlp"], aux_loss_weight=0.0, dense=True)
    elif cfg.variant == "dense_total":
        m.update(k_att=m["n_att_experts"], k_mlp=m["n_mlp_experts"], aux_loss_weight=0.0, dense=True)
    return ModuleFormerConfig(vocab_size=vocab_size, block_size=cfg.seq_len, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id, **m)


def apply_threads(cfg: Config) -> None:
    """Pin torch's intra-op threads when the config asks (``threads: 0`` keeps torch's default)."""
    set_torch_threads(cfg.threads)
