"""The config of every entry point (strict keys through shared.runs.load_config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from papers.himpp.model import METHODS

DATASETS = ("tox21", "sider", "muv", "toxcast", "fsmol")


@dataclass
class HiMPPConfig:
    # data and episodes (Sec. 4.1)
    dataset: str = "tox21"  # fsmol: a user's FS-Mol download in $FSMOL_DIR (train/ valid/ test/*.jsonl.gz)
    fsmol_max_tasks_per_split: int | None = None  # read only the first tasks of each FS-Mol split (None: all)
    k_shot: int = 10
    n_query: int = 16  # training queries per episode
    tasks_per_batch: int = 9
    # model (Sec. 3; official defaults in configs/paper.yaml)
    method: str = "himpp"
    hidden: int = 300
    gin_layers: int = 5
    dropout: float = 0.5
    hyper_hidden: int = 128
    embed_dim: int = 128
    predictor_layers: int = 5
    top_k: int = 10
    maml_inner_steps: int = 5
    maml_inner_lr: float = 0.5
    # optimisation
    steps: int = 2000
    lr: float = 6e-4
    weight_decay: float = 5e-5
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    # evaluation
    test_repeats: int = 10
    test_max_queries: int | None = None  # None: every remaining molecule of a test task is a query
    test_keep_positives: bool = False  # capped queries keep every positive (MUV: ~20 per task) instead of stratifying
    query_chunk: int = 256
    checkpoint: str | None = None  # evaluate.py: the trained parameters (None: <out>/checkpoint.pkl)
    # self-supervised pretraining of the encoder (attribute masking on the training tasks' molecules; 0 = none)
    pretrain_steps: int = 0
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3
    # reproduce.py: the grid it runs
    datasets: list[str] = field(default_factory=lambda: ["tox21", "sider"])
    shots: list[int] = field(default_factory=lambda: [10, 1])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        for m in [self.method, *self.methods]:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}; choose from {list(METHODS)}")
        for name, value in (("k_shot", self.k_shot), ("n_query", self.n_query), ("steps", self.steps),
                            ("tasks_per_batch", self.tasks_per_batch), ("test_repeats", self.test_repeats),
                            ("gin_layers", self.gin_layers), ("predictor_layers", self.predictor_layers)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for d in [self.dataset, *self.datasets]:
            if d not in DATASETS:
                raise ValueError(f"unknown dataset {d!r}; choose from {list(DATASETS)}")
        if self.n_query < 2:
            raise ValueError("n_query must be at least 2 (one query per class)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
