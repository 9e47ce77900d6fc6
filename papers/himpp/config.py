"""The config of every entry point (strict keys through shared.runs.load_config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from papers.himpp.model import CLASSIFIERS, GIN_NORMS, METHODS

DATASETS = ("tox21", "sider", "muv", "toxcast", "fsmol")
TRAIN_QUERIES = ("random", "balanced")


@dataclass
class HiMPPConfig:
    # data and episodes (Sec. 4.1)
    dataset: str = "tox21"  # fsmol: a user's FS-Mol download in $FSMOL_DIR (train/ valid/ test/*.jsonl.gz)
    fsmol_max_tasks_per_split: int | None = None  # read only the first tasks of each FS-Mol split (None: all)
    k_shot: int = 10
    n_query: int = 16  # training queries per episode
    train_queries: str = "random"  # PACIA: drawn at random from the rest of the task (natural ratio) | balanced
    tasks_per_batch: int = 9
    # model (Sec. 3; official defaults in configs/paper.yaml)
    method: str = "himpp"
    hidden: int = 300
    gin_layers: int = 5
    dropout: float = 0.5
    hyper_hidden: int = 128
    embed_dim: int = 128
    predictor_layers: int = 5
    top_k: int | None = None  # rel_k, edges kept per relation-graph node; None: k_shot (PACIA: rel_k = n_shot_train)
    relation_residual_norm: bool = False  # LayerNorm(x + update) in the relation layers (not in PACIA)
    classifier: str = "hyper"  # PACIA's hypernetwork (w, b) from prototypes | prototype (scaled dot product)
    gin_norm: str = "layer"  # layer | batch (Pre-GNN's BatchNorm with the checkpoint's frozen statistics)
    pretrained_gin: str | None = None  # Pre-GNN GIN checkpoint (PyTorch state dict); "$VAR": path from env var VAR
    maml_inner_steps: int = 5
    maml_inner_lr: float = 0.5
    # optimisation
    steps: int = 2000
    lr: float = 6e-4
    weight_decay: float = 5e-5
    seed: int = 0
    devices: int = 0  # local devices the meta-batch of episodes is sharded over (0: all; tasks_per_batch divisible)
    checkpoint_every: int = 100
    log_every: int = 10
    # evaluation
    test_repeats: int = 10  # support draws per test task (at least 10 for reported numbers)
    eval_every: int = 0  # also test every this many steps, for the best-over-checkpoints column (0: final only)
    test_max_queries: int | None = None  # None: every remaining molecule of a test task is a query
    test_keep_positives: bool = False  # capped queries keep every positive (MUV: ~20 per task) instead of stratifying
    query_chunk: int = 256
    checkpoint: str | None = None  # evaluate.py: the trained parameters (None: <out>/checkpoint.pkl)
    # self-supervised pretraining of the encoder (attribute masking on the training tasks' molecules; 0 = none)
    pretrain_steps: int = 0
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3
    grid_pretrain_steps: int = 0  # reproduce.py only: extra "+pretrain" rows (HiMPP, PAR) after this many steps
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
        for name, value, choices in (("train_queries", self.train_queries, TRAIN_QUERIES),
                                     ("classifier", self.classifier, CLASSIFIERS), ("gin_norm", self.gin_norm, GIN_NORMS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or null for k_shot), got {self.top_k}")
        if self.eval_every < 0 or self.devices < 0:
            raise ValueError("eval_every and devices must be >= 0")
        if self.pretrained_gin is not None and self.gin_norm != "batch":
            raise ValueError("pretrained_gin (a Pre-GNN checkpoint) needs gin_norm: batch (its BatchNorm layers)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def relation_k(cfg: HiMPPConfig) -> int:
    """rel_k: ``top_k`` if set, else the number of shots (PACIA's parser: ``args.rel_k = args.n_shot_train``)."""
    return cfg.top_k if cfg.top_k is not None else cfg.k_shot
