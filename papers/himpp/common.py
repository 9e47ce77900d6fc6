"""What every entry point shares: loading the benchmark (unparseable molecules dropped), optional pretraining,
one train-and-test run, and the loss plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from papers.himpp.config import HiMPPConfig
from papers.himpp.episodes import drop_unparseable
from papers.himpp.featurize import GraphCache
from papers.himpp.pregnn import pregnn_encoder
from papers.himpp.pretrain import pretrain_encoder, training_smiles
from papers.himpp.training import evaluate, train
from shared.data import load
from shared.data.molecules import FewShotBenchmark
from shared.runs import Run


def load_benchmark(name: str, cache: GraphCache, fsmol_max_tasks_per_split: int | None = None) -> FewShotBenchmark:
    """``shared.data.load(name)`` with the molecules RDKit cannot featurise removed (FS-Mol: train tasks from its
    ``train/``, test tasks from ``test/``, optionally only the first ``fsmol_max_tasks_per_split`` of each)."""
    raw = load(name, max_tasks_per_split=fsmol_max_tasks_per_split) if name == "fsmol" else load(name)
    bench, _ = drop_unparseable(raw, cache)
    return bench


def initial_encoder(cfg: HiMPPConfig, bench: FewShotBenchmark, cache: GraphCache, out: Path,
                    progress: bool = True) -> tuple[Any, list[float]] | tuple[None, list[float]]:
    """The encoder a run starts from: the converted Pre-GNN checkpoint (``pretrained_gin``), else attribute masking
    for ``pretrain_steps`` steps, else None (random initialisation); plus the pretraining loss curve."""
    if cfg.pretrained_gin is not None:
        return pregnn_encoder(cfg.pretrained_gin, cfg.gin_layers, cfg.hidden), []
    return attribute_masking(cfg, cfg.pretrain_steps, bench, cache, out, progress)


def attribute_masking(cfg: HiMPPConfig, steps: int, bench: FewShotBenchmark, cache: GraphCache, out: Path,
                      progress: bool = True) -> tuple[Any, list[float]] | tuple[None, list[float]]:
    """Attribute-masking pretraining on the training tasks' molecules for ``steps`` steps (None when 0)."""
    if steps == 0:
        return None, []
    return pretrain_encoder(training_smiles(bench), cfg.hidden, cfg.gin_layers, cfg.dropout, steps,
                            cfg.pretrain_batch, cfg.pretrain_lr, cfg.seed, cache, out / "pretrain.pkl", progress,
                            cfg.gin_norm)


def train_and_test(cfg: HiMPPConfig, out: Path, cache: GraphCache, bench: FewShotBenchmark,
                   init: Any | None = None, progress: bool = True) -> dict[str, Any]:
    """Meta-train, meta-test and write the run directory (metrics.json, loss.png); returns the metrics."""
    run = Run(out, cfg)
    params, info = train(cfg, bench, out, cache, init=init, run=run, progress=progress)
    plot_losses({cfg.method: info["losses"]}, out / "loss.png")
    metrics = evaluate(cfg, bench, params, cache, progress=progress)
    metrics.update({k: v for k, v in info.items() if k != "losses"}, method=cfg.method, dataset=cfg.dataset,
                   k_shot=cfg.k_shot, pretrained=init is not None)
    if info["checkpoint_aucs"]:  # PAR / PACIA report the best test evaluation over training (selection on test)
        metrics["roc_auc_best_checkpoint"] = max(auc for _, auc in info["checkpoint_aucs"])
    run.log(cfg.steps, test_roc_auc=metrics["roc_auc"])
    return run.finish(metrics)


def plot_losses(curves: dict[str, list[float]], path: Path, window: int = 10) -> None:
    """Training loss (moving average over ``window`` steps) of each named curve."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, losses in curves.items():
        if losses:
            w = min(window, len(losses))
            smooth = [sum(losses[i - w + 1:i + 1]) / w for i in range(w - 1, len(losses))]
            ax.plot(range(w, len(losses) + 1), smooth, label=name)
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
