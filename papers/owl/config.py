"""The experiment's settings: one dataclass, loaded from configs/*.yaml with strict keys."""

from __future__ import annotations

import dataclasses

from papers.owl.corpora import CORPORA
from papers.owl.models import DTYPES, MODELS, is_known_model
from papers.owl.pruners import check_sparsity, parse_sparsity_type
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
    # calibration (paper: 128 C4 sequences of 2048 tokens)
    calib_corpus: str = "shakespeare"
    n_calib: int = 32
    calib_len: int = 256
    # one pruning run (train.py)
    method: str = "owl_wanda"
    sparsity: float = 0.7
    sparsity_type: str = "unstructured"
    owl_m: float = 5.0
    owl_lambda: float = 0.08
    sparsegpt_blocksize: int = 128
    sparsegpt_damp: float = 0.01
    save_model: bool = True
    # perplexity (paper: WikiText-2 test, non-overlapping 2048-token windows)
    eval_corpora: list[str] = dataclasses.field(default_factory=lambda: ["austen", "python_docs"])
    eval_tokens: int = 16384
    eval_window: int = 512
    # reproduction (reproduce.py)
    table_methods: list[str] = dataclasses.field(
        default_factory=lambda: ["magnitude", "wanda", "owl_wanda", "sparsegpt", "owl_sparsegpt"])
    sweep_methods: list[str] = dataclasses.field(default_factory=lambda: ["wanda", "owl_wanda"])
    sweep_sparsities: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.6, 0.8])
    grid_method: str = "wanda"
    grid_m: list[float] = dataclasses.field(default_factory=lambda: [3.0, 5.0, 7.0])
    grid_lambda: list[float] = dataclasses.field(default_factory=lambda: [0.04, 0.08, 0.12])
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
        for method in (self.method, *self.table_methods, *self.sweep_methods, f"owl_{self.grid_method}"):
            if method not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        for s in (self.sparsity, *self.sweep_sparsities):
            check_sparsity(s)
        parse_sparsity_type(self.sparsity_type)
        for m in (self.owl_m, *self.grid_m):
            if m <= 0:
                raise ValueError(f"the outlier threshold M (owl_m) must be positive, got {m}")
        for lam in (self.owl_lambda, *self.grid_lambda):
            if not 0 <= lam < 0.5:
                raise ValueError(f"owl_lambda must lie in [0, 0.5), got {lam}")
        if min(self.n_calib, self.calib_len, self.eval_tokens, self.eval_window, self.sparsegpt_blocksize) <= 0:
            raise ValueError("n_calib, calib_len, eval_tokens, eval_window and sparsegpt_blocksize must be positive")
        if self.eval_tokens < self.eval_window:
            raise ValueError(f"eval_tokens ({self.eval_tokens}) must fill at least one window ({self.eval_window})")
