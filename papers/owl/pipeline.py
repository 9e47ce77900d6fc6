"""The steps every entry point shares: data, one pruning run with its layer report, perplexity, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papers.owl.config import Config
from papers.owl.corpora import corpus_tokens
from papers.owl.models import model_device
from papers.owl.pruners import parse_sparsity_type
from papers.owl.sequential import (
    BlockDone,
    dense_input_norms,
    find_decoder_blocks,
    make_plan,
    outlier_ratios,
    overall_sparsity,
    prune_sequential,
    seeded_windows,
    sparsity_by_block,
)
from shared.metrics import causal_lm_perplexity

CALIB_STREAM_TOKENS = 2_000_000  # enough to read every Shakespeare training play


def split_method(method: str) -> tuple[str | None, bool]:
    """``"owl_wanda"`` -> ("wanda", True); ``"dense"`` -> (None, False)."""
    if method == "dense":
        return None, False
    return method.removeprefix("owl_"), method.startswith("owl_")


def calibration_sequences(cfg: Config, tokenizer: object | None) -> torch.Tensor:
    """``n_calib`` random windows of ``calib_len`` tokens from the calibration corpus's train split."""
    stream = corpus_tokens(cfg.calib_corpus, "train", tokenizer, CALIB_STREAM_TOKENS, cfg.seed)
    return seeded_windows(stream, cfg.n_calib, cfg.calib_len, cfg.seed)


def evaluation_tokens(cfg: Config, tokenizer: object | None) -> dict[str, torch.Tensor]:
    """Held-out test documents of each evaluation corpus."""
    return {name: corpus_tokens(name, "test", tokenizer, cfg.eval_tokens, cfg.seed + 1) for name in cfg.eval_corpora}


def perplexities(model: nn.Module, tokens: dict[str, torch.Tensor], window: int, progress: bool) -> dict[str, float]:
    """Perplexity on each corpus, the windows run on the model's device."""
    device = model_device(model)
    return {f"ppl_{name}": causal_lm_perplexity(model, ids, window, device=device, progress=progress)
            for name, ids in tokens.items()}


def prune(model: nn.Module, cfg: Config, method: str, sparsity: float, sequences: torch.Tensor,
          dense_norms: list[dict[str, torch.Tensor]] | None = None, m: float | None = None,
          lam: float | None = None, start_block: int = 0, start_inputs: torch.Tensor | None = None,
          on_block_done: BlockDone | None = None, ratios: list[float] | None = None) -> dict[str, Any]:
    """Prune ``model`` in place with ``method`` at ``sparsity``; returns the layer report.

    ``dense_norms`` (OWL pass 1) are computed here when an OWL method needs them and none are given; they must
    come from the dense model. ``m``/``lam`` default to the config's owl_m/owl_lambda. A resumed run passes the
    outlier ``ratios`` it computed before any block was pruned.
    """
    pruner, owl = split_method(method)
    m = cfg.owl_m if m is None else m
    lam = cfg.owl_lambda if lam is None else lam
    n_blocks = len(find_decoder_blocks(model))
    report: dict[str, Any] = {"method": method, "sparsity_target": sparsity, "sparsity_type": cfg.sparsity_type}
    if pruner is None:
        return {**report, "overall_sparsity": overall_sparsity(model)}
    if not owl:
        ratios = None
    elif ratios is None:
        if start_block > 0:
            raise ValueError("resuming an OWL run needs the outlier ratios of the dense model")
        norms = dense_norms if dense_norms is not None else dense_input_norms(model, sequences, cfg.progress)
        ratios = outlier_ratios(model, norms, m)
    if owl:
        report.update(owl_m=m, owl_lambda=lam)
    plan = make_plan(pruner, n_blocks, sparsity, parse_sparsity_type(cfg.sparsity_type), ratios, lam,
                     cfg.sparsegpt_blocksize, cfg.sparsegpt_damp)
    prune_sequential(model, sequences, plan, start_block, start_inputs, on_block_done, cfg.progress)
    achieved = sparsity_by_block(model)
    report.update(
        outlier_ratios=ratios,
        assigned_sparsity=plan.sparsities,
        achieved_block_sparsity=[row["block"] for row in achieved],
        achieved_layer_sparsity=achieved,
        overall_sparsity=overall_sparsity(model),
    )
    return report


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
    if report.get("outlier_ratios"):
        twin = ax.twinx()
        twin.bar(blocks, report["outlier_ratios"], alpha=0.25, color="tab:red", label="outlier ratio D (%)")
        twin.set_ylabel(f"outlier ratio D (%), M={report.get('owl_m')}")
        twin.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title(f"{report['method']} at {report['sparsity_target']:.0%} ({report['sparsity_type']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2))
