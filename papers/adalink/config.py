"""The experiment's settings: one dataclass, loaded from configs/*.yaml with strict keys."""

from __future__ import annotations

import dataclasses

from papers.adalink.adalink import ACTIVATIONS
from papers.adalink.data import TASKS
from papers.adalink.methods import METHODS
from papers.adalink.models import DTYPES, is_known_model


@dataclasses.dataclass
class Config:
    seed: int = 0
    # base model: smollm2_135m_instruct (offline here), tiny_llama (tests), random_llama_1b (GPU checks) or
    # hf:<hub id or folder>
    model: str = "smollm2_135m_instruct"
    dtype: str = "float32"  # the frozen weights' dtype; adapters stay float32
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto: bf16 autocast on CUDA sm>=8, none on CPU | bf16 | fp32
    threads: int = 1  # torch CPU threads (0 = torch's default)
    # data: a task of data.TASKS, seeded subsets of each split (0 = the whole split)
    task: str = "rotten_tomatoes"
    data_dir: str = ""  # where the task's files are ("" = its default / environment variable)
    data_seed: int = 0  # the same subsets for every method and seed
    n_train: int = 128
    n_val: int = 64
    n_test: int = 128
    max_field_tokens: int = 24  # each text field cut to this many tokens before the template is filled
    eval_splits: list[str] = dataclasses.field(default_factory=lambda: ["validation", "test"])
    # one training run (train.py)
    method: str = "adalink"
    lr: float = 1e-3
    steps: int = 16
    batch_size: int = 8  # the global batch
    micro_batch_size: int = 0  # 0 = the whole batch in one pass; else gradient accumulation over micro-batches
    strategy: str = "ddp"
    warmup_steps: int = 2
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    eval_batch_size: int = 16
    checkpoint_every: int = 0  # 0 = only at the end
    keep_checkpoint: bool = True  # False: delete checkpoint.pt once the run has finished (full FT's is 1.6 GB)
    save_full_model: bool = False  # full FT's fine-tuned model (the other methods always save their small adapter)
    # methods (Sec. 3 and 4)
    adalink_rank: int = 64
    adalink_activation: str = "identity"
    lora_rank: int = 0  # method lora: 0 = the rank whose parameter count matches AdaLink's at adalink_rank
    lora_paper_rank: int = 8  # method lora_paper: a fixed rank as in the LoRA / AdaLink papers' tables
    lora_alpha: float = 0.0  # 0 = 2 x rank
    lora_targets: list[str] = dataclasses.field(default_factory=lambda: ["q_proj", "v_proj"])
    prompt_tokens: int = 10
    # reproduction (reproduce.py): lr chosen on validation with seed `seed`, then `seeds` on test
    methods: list[str] = dataclasses.field(default_factory=lambda: ["adalink", "lora", "prompt_tuning", "full_ft"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    lr_grid: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {
        "adalink": [1e-3, 3e-3], "lora": [1e-3, 3e-3], "prompt_tuning": [1e-2, 3e-2], "full_ft": [1e-5, 3e-5]})
    bench_steps: int = 3
    bootstrap: int = 2000

    def split_sizes(self, splits: list[str]) -> dict[str, int]:
        sizes = {"train": self.n_train, "validation": self.n_val, "test": self.n_test}
        return {s: sizes[s] for s in splits}

    def __post_init__(self) -> None:
        if not is_known_model(self.model):
            raise ValueError("model must be smollm2_135m_instruct, tiny_llama, random_llama_1b or hf:<hub id or folder>, "
                             f"got {self.model!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.strategy != "ddp":
            raise ValueError(f"strategy must be ddp (the only one this paper's loop has), got {self.strategy!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for method in (self.method, *self.methods, *self.lr_grid):
            if method not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        missing = [m for m in self.methods if m != "zero_shot" and not self.lr_grid.get(m)]
        if missing:
            raise ValueError(f"lr_grid has no learning rates for {missing}")
        if self.adalink_activation not in ACTIVATIONS:
            raise ValueError(f"adalink_activation must be one of {tuple(ACTIVATIONS)}, got {self.adalink_activation!r}")
        for split in self.eval_splits:
            if split not in ("validation", "test"):
                raise ValueError(f"eval_splits may hold validation and test, got {split!r}")
        if min(self.steps, self.batch_size, self.eval_batch_size, self.adalink_rank, self.prompt_tokens,
               self.max_field_tokens) <= 0:
            raise ValueError("steps, batch_size, eval_batch_size, adalink_rank, prompt_tokens and max_field_tokens "
                             "must be positive")
        if self.micro_batch_size < 0 or (self.micro_batch_size and self.batch_size % self.micro_batch_size):
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must divide batch_size ({self.batch_size})")
        if self.lr <= 0 or any(lr <= 0 for lrs in self.lr_grid.values() for lr in lrs):
            raise ValueError("learning rates must be positive")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
