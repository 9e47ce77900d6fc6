"""The experiment's settings: one dataclass, loaded from configs/*.yaml with strict keys."""

from __future__ import annotations

import dataclasses

from papers.owl.corpora import CORPORA
from papers.owl.models import DTYPES, MODELS, is_known_model
from papers.owl.pruners import TIE_BREAKS, check_owl_lambda, check_sparsity, parse_sparsity_type
from papers.owl.sequential import METHODS


@dataclasses.dataclass
class Config:
    seed: int = 0
    model: str = "smollm2_135m_instruct"
    # where model, calibration activations, pruner math and perplexity run: "auto" (CUDA if available), "cpu",
    # "cuda" or "cuda:N"; and the model's dtype (the official code: float16 on the GPU)
    device: str = "auto"
    dtype: str = "float32"
    # torch CPU threads (0 = torch's default); SparseGPT's results depend on it through float rounding
    threads: int = 0
    # keep only the block being pruned on the device and the others on the CPU ("auto": for models of 7B+ params
    # on CUDA), for GPUs that cannot hold the whole model
    offload: str = "auto"
    # calibration (paper: 128 C4 sequences of 2048 tokens)
    calib_corpus: str = "shakespeare"
    n_calib: int = 128
    calib_len: int = 256
    # one pruning run (train.py)
    method: str = "owl_wanda"
    sparsity: float = 0.7
    sparsity_type: str = "unstructured"
    owl_m: float = 5.0
    owl_lambda: float = 0.08
    # "block": one ratio per decoder block (the paper); "layer": one per linear from its own outlier ratio (App. C)
    owl_granularity: str = "block"
    # order among tied scores: "stable" sort (the official Wanda/OWL code) or "topk" (unspecified order)
    tie_break: str = "stable"
    sparsegpt_blocksize: int = 128
    sparsegpt_damp: float = 0.01
    save_model: bool = True
    # "dense": safetensors as save_pretrained writes them; "compressed": the kept weights and a bit-packed mask
    # (2:4 also in the semi-structured layout of torch.sparse), see papers/owl/export.py
    save_format: str = "dense"
    # perplexity (paper: WikiText-2 test, non-overlapping 2048-token windows); tokens are per corpus, 0 = the
    # whole split; eval_bos puts the tokenizer's BOS token first, as the official eval_ppl's tokenizer call does
    eval_corpora: list[str] = dataclasses.field(default_factory=lambda: ["austen", "python_docs"])
    eval_tokens: int = 16384
    val_tokens: int = 4096
    eval_window: int = 512
    eval_bos: bool = False
    # zero-shot accuracy in evaluate.py through lm-evaluation-harness (paper Table 3: configs/paper.yaml); empty =
    # none. lm-eval reads the tasks' data through `datasets` (offline: its cache, or task YAMLs in zero_shot_include);
    # zero_shot_limit caps the items per task (null = all)
    zero_shot_tasks: list[str] = dataclasses.field(default_factory=list)
    zero_shot_include: str | None = None
    zero_shot_limit: int | None = None
    zero_shot_batch_size: int = 8
    # reproduction (reproduce.py): M and lambda of OWL chosen on validation documents (seed `seed`); the table
    # methods then run for every calibration seed on test documents; the calibration-size curve and the
    # tie-break check run at seed `seed` on validation
    table_methods: list[str] = dataclasses.field(default_factory=lambda: ["wanda", "owl_wanda"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    grid_method: str = "wanda"
    grid_m: list[float] = dataclasses.field(default_factory=lambda: [5.0, 10.0])
    grid_lambda: list[float] = dataclasses.field(default_factory=lambda: [0.08, 0.2])
    curve_n_calib: list[int] = dataclasses.field(default_factory=lambda: [8, 32, 128])
    tie_break_check: bool = True
    # the conclusion is withheld unless the uniform baseline works: finite geo-mean test ppl below this bound
    baseline_max_ppl: float = 5000.0
    progress: bool = True

    def __post_init__(self) -> None:
        if not is_known_model(self.model):
            raise ValueError(f"model must be one of {MODELS} or hf:<hub id or folder>, got {self.model!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        for corpus in (self.calib_corpus, *self.eval_corpora):
            if corpus not in CORPORA:
                raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
        for method in (self.method, *self.table_methods, f"owl_{self.grid_method}"):
            if method not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        check_sparsity(self.sparsity)
        nm = parse_sparsity_type(self.sparsity_type)
        for m in (self.owl_m, *self.grid_m):
            if m <= 0:
                raise ValueError(f"the outlier threshold M (owl_m) must be positive, got {m}")
        for lam in (self.owl_lambda, *self.grid_lambda):
            check_owl_lambda(lam, nm)
        choices = {"offload": ("auto", "always", "never"), "owl_granularity": ("block", "layer"), "tie_break": TIE_BREAKS,
                   "save_format": ("dense", "compressed")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if min(self.n_calib, self.calib_len, self.eval_window, self.sparsegpt_blocksize, *self.curve_n_calib) <= 0:
            raise ValueError("n_calib, calib_len, eval_window, sparsegpt_blocksize, curve_n_calib must be positive")
        for key in ("eval_tokens", "val_tokens"):
            if getattr(self, key) < 0 or 0 < getattr(self, key) < self.eval_window:
                raise ValueError(f"{key} must be 0 (the whole split) or fill a window of {self.eval_window}")
        if (self.zero_shot_limit is not None and self.zero_shot_limit <= 0) or self.zero_shot_batch_size <= 0:
            raise ValueError("zero_shot_limit (or null) and zero_shot_batch_size must be positive")
        if not self.seeds or self.seed not in self.seeds:
            raise ValueError(f"seeds must be a non-empty list that contains seed ({self.seed}), got {self.seeds}")
