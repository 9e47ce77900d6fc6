"""The steps every entry point shares: data, one pruning run with its layer report, perplexity, plots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papers.owl.config import Config
from papers.owl.corpora import corpus_tokens
from papers.owl.offload import execution_device, streamed
from papers.owl.pruners import parse_sparsity_type
from papers.owl.sequential import (
    BlockDone,
    dense_input_norms,
    find_decoder_blocks,
    make_plan,
    model_sparsity,
    outlier_ratios,
    overall_sparsity,
    prune_sequential,
    seeded_windows,
    sparsity_by_block,
)
from shared.accel import peak_memory_bytes
from shared.metrics import causal_lm_perplexity

CALIB_STREAM_TOKENS = 2_000_000  # enough to read every Shakespeare training play


def split_method(method: str) -> tuple[str | None, bool]:
    """``"owl_wanda"`` -> ("wanda", True); ``"dense"`` -> (None, False)."""
    if method == "dense":
        return None, False
    return method.removeprefix("owl_"), method.startswith("owl_")


def calibration_sequences(cfg: Config, tokenizer: object | None, seed: int | None = None,
                          n_calib: int | None = None) -> torch.Tensor:
    """``n_calib`` random windows of ``calib_len`` tokens from the calibration corpus's train split."""
    seed = cfg.seed if seed is None else seed
    stream = corpus_tokens(cfg.calib_corpus, "train", tokenizer, CALIB_STREAM_TOKENS, 0)
    return seeded_windows(stream, cfg.n_calib if n_calib is None else n_calib, cfg.calib_len, seed)


def evaluation_tokens(cfg: Config, tokenizer: object | None, split: str = "test") -> dict[str, torch.Tensor]:
    """Held-out documents of each evaluation corpus: ``test`` (eval_tokens each) or ``validation`` (val_tokens)."""
    if split not in ("validation", "test"):
        raise ValueError(f"evaluation split must be validation or test, got {split!r}")
    n = cfg.eval_tokens if split == "test" else cfg.val_tokens
    return {name: corpus_tokens(name, split, tokenizer, n, 1, bos=cfg.eval_bos) for name in cfg.eval_corpora}


def perplexities(model: nn.Module, tokens: dict[str, torch.Tensor], window: int, progress: bool,
                 prefix: str = "ppl_") -> dict[str, float]:
    """Perplexity on each corpus, the windows run on the model's device (offloaded blocks streamed through it)."""
    device = execution_device(model)
    with streamed(find_decoder_blocks(model), device):
        return {f"{prefix}{name}": causal_lm_perplexity(model, ids, window, device=device, progress=progress)
                for name, ids in tokens.items()}


def memory_report(device: torch.device) -> dict[str, int]:
    """Absolute peaks of the process so far: resident set size, and allocated GPU memory on CUDA (else 0)."""
    return {"peak_rss_bytes": peak_memory_bytes(torch.device("cpu")),
            "peak_gpu_memory_bytes": peak_memory_bytes(device) if device.type == "cuda" else 0}


def prune(model: nn.Module, cfg: Config, method: str, sparsity: float, sequences: torch.Tensor,
          dense_norms: list[dict[str, torch.Tensor]] | None = None, m: float | None = None,
          lam: float | None = None, start_block: int = 0, start_inputs: torch.Tensor | None = None,
          on_block_done: BlockDone | None = None, ratios: list | None = None,
          tie_break: str | None = None) -> dict[str, Any]:
    """Prune ``model`` in place with ``method`` at ``sparsity``; returns the layer report.

    ``dense_norms`` (OWL pass 1) are computed here when an OWL method needs them and none are given; they must
    come from the dense model. ``m``/``lam``/``tie_break`` default to the config's. A resumed run passes the
    outlier ``ratios`` it computed before any block was pruned. ``prune_seconds`` includes the dense outlier
    pass when it runs here; a caller that passes shared ``dense_norms`` adds their time itself.
    """
    start = time.perf_counter()
    pruner, owl = split_method(method)
    m = cfg.owl_m if m is None else m
    lam = cfg.owl_lambda if lam is None else lam
    tie_break = cfg.tie_break if tie_break is None else tie_break
    n_blocks = len(find_decoder_blocks(model))
    report: dict[str, Any] = {"method": method, "sparsity_target": sparsity, "sparsity_type": cfg.sparsity_type,
                              "tie_break": tie_break}
    if pruner is None:
        return {**report, **sparsity_columns(model), "prune_seconds": 0.0}
    if not owl:
        ratios = None
    elif ratios is None:
        if start_block > 0:
            raise ValueError("resuming an OWL run needs the outlier ratios of the dense model")
        norms = dense_norms if dense_norms is not None else dense_input_norms(model, sequences, cfg.progress)
        ratios = outlier_ratios(model, norms, m, per_layer=cfg.owl_granularity == "layer")
    if owl:
        report.update(owl_m=m, owl_lambda=lam, owl_granularity=cfg.owl_granularity)
    plan = make_plan(pruner, n_blocks, sparsity, parse_sparsity_type(cfg.sparsity_type), ratios, lam,
                     cfg.sparsegpt_blocksize, cfg.sparsegpt_damp, tie_break)
    prune_sequential(model, sequences, plan, start_block, start_inputs, on_block_done, cfg.progress)
    seconds = time.perf_counter() - start
    achieved = sparsity_by_block(model)
    report.update(
        outlier_ratios=ratios,
        assigned_sparsity=plan.sparsities,
        assigned_n=[n for n, _ in plan.nm] if plan.nm else None,
        assigned_layer_sparsity=plan.layer_sparsities,
        achieved_block_sparsity=[row["block"] for row in achieved],
        achieved_layer_sparsity=achieved,
        prune_seconds=seconds,
        **sparsity_columns(model),
    )
    return report


def sparsity_columns(model: nn.Module) -> dict[str, float]:
    """Both sparsities: of the decoder blocks' linears (what the target refers to) and of the whole model
    (embeddings and a tied lm_head, never pruned, included)."""
    return {"overall_sparsity": overall_sparsity(model), "model_sparsity": model_sparsity(model)}


def plot_layer_report(report: dict[str, Any], path: Path) -> None:
    """Assigned vs achieved sparsity per block, with the outlier ratio on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    blocks = range(len(report.get("assigned_sparsity") or []))
    ax.plot(blocks, report.get("assigned_sparsity") or [], "o-", label="assigned sparsity")
    ax.plot(blocks, report.get("achieved_block_sparsity") or [], "x--", label="achieved sparsity")
    ax.set_xlabel("decoder block")
    ax.set_ylabel("sparsity")
    ratios = report.get("outlier_ratios") or []
    ratios = [sum(r.values()) / len(r) if isinstance(r, dict) else r for r in ratios]  # per-layer: block mean
    if ratios:
        twin = ax.twinx()
        twin.bar(blocks, ratios, alpha=0.25, color="tab:red", label="outlier ratio D (%)")
        twin.set_ylabel(f"outlier ratio D (%), M={report.get('owl_m')}")
        twin.legend(loc="upper right")
    ax.legend(loc="upper left")
    if report.get("assigned_n"):
        for i, n in enumerate(report["assigned_n"]):
            ax.annotate(str(n), (i, report["assigned_sparsity"][i]), fontsize=7, ha="center", va="bottom")
    ax.set_title(f"{report['method']} at {report['sparsity_target']:.0%} ({report['sparsity_type']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2))
