"""Train a U-ViT baseline, then fine-tune it with DeeDiff's losses: ``python -m papers.deediff.train --config FILE
--out DIR [key=value ...]``. Writes baseline.pt and deediff.pt (EMA weights) into the config's weights folder
(``Config.weights_path``) and resumes from the run folder's newest checkpoint (``DIR/checkpoints/``).

Runs on CPU or CUDA (``device``, ``precision``), accumulates gradients (``micro_batch_size``) and runs under
``torchrun --nproc_per_node N`` on the same global batches as one process (rank 0 writes)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from papers.deediff.config import Config
from papers.deediff.data import load_images
from papers.deediff.diffusion import VPSDE, baseline_loss, deediff_losses, net_time
from papers.deediff.model import UViT
from papers.deediff.validation import ValidationScorer
from shared.accel import (
    TrainContext,
    count_parameters,
    pick_device,
    seed_everything,
    set_torch_threads,
    setup_training,
)
from shared.runs import Run, entrypoint, load_checkpoint, load_config, parse_run_args, save_checkpoint


def configure_torch(cfg: Config) -> torch.device:
    """Seed everything, set the CPU thread count the config asks for, and pick the device."""
    seed_everything(cfg.seed)
    set_torch_threads(cfg.threads)
    return pick_device(cfg.device)


def make_optimizer(cfg: Config, params: list[torch.nn.Parameter], lr: float) -> torch.optim.AdamW:
    """AdamW as in U-ViT / DeeDiff (weight decay 0.03, betas (0.99, 0.999) in the paper config)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, betas=(cfg.adam_beta1, cfg.adam_beta2))


def lr_at(cfg: Config, stage_step: int, base_lr: float, warmup_steps: int | None = None) -> float:
    """Linear warm-up over ``warmup_steps`` (default: the baseline's), then constant (U-ViT's 'customized')."""
    warmup = cfg.warmup_steps if warmup_steps is None else warmup_steps
    return base_lr * min(1.0, (stage_step + 1) / max(1, warmup))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float, stage_step: int, warmup: bool = True) -> None:
    """ema <- decay ema + (1 - decay) model. ``warmup`` (a model trained from scratch): the decay ramps up as
    (1 + s) / (10 + s); without it (fine-tuning) the EMA starts at the pretrained weights at full decay, as
    AdaDiff's ``ema_update(0)`` copy followed by a constant rate."""
    if warmup:
        decay = min(decay, (1 + stage_step) / (10 + stage_step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


def optimizer_step(
    cfg: Config, model: UViT, ema: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, stage_step: int
) -> None:
    """Backward, optional grad-norm clipping, the AdamW step and the EMA update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    update_ema(ema, model, cfg.ema_decay, stage_step)


def batch_for_step(cfg: Config, step: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The step's (x0, y, t, noise), drawn from a generator seeded by (seed, step): resume repeats nothing."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen)
    t = torch.rand(cfg.batch_size, generator=gen)
    noise = torch.randn((cfg.batch_size, *images.shape[1:]), generator=gen)
    return images[idx], labels[idx], t, noise


def load_weights(path: Path, cfg: Config, backbone_only: bool = False) -> UViT:
    """A UViT with the EMA weights saved at the end of a training stage (``backbone_only``: keep fresh UEMs,
    for a baseline whose never-trained UEMs may have another input size than ``cfg``'s)."""
    model = UViT(cfg)
    if backbone_only:
        load_backbone(model, path)
    else:
        model.load_state_dict(load_checkpoint(path)["model"])
    return model.eval()


def load_backbone(model: UViT, path: Path) -> None:
    """Copy a baseline.pt's backbone into ``model``, keeping its own (fresh) UEMs.

    The UEMs may differ in shape (a timestep-aware fine-tune of a baseline trained with the code's UEM); every
    backbone tensor must match.
    """
    state = {k: v for k, v in load_checkpoint(path)["model"].items() if not k.startswith("uems.")}
    own = model.state_dict()
    misfit = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if not k.startswith("uems.") and k not in state]
    if misfit or missing:
        raise ValueError(f"{path} does not fit this config's U-ViT: other shapes or unknown {misfit}, missing {missing}")
    model.load_state_dict(state, strict=False)


def prepare_for_stage(ctx: TrainContext, module: UViT, stage: str) -> torch.nn.Module:
    """``module`` on the device, DDP-wrapped under torchrun. The baseline stage never runs the UEMs, so they are
    frozen there (DDP would wait for their gradients); DeeDiff fine-tuning trains every parameter."""
    module.uems.requires_grad_(stage == "deediff")
    return ctx.prepare(module)


def stage_loss(cfg: Config, sde: VPSDE, stage: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], Any]:
    """The stage's loss on one micro-batch (x0, y, t, noise); the training context averages it over the batch."""

    def baseline(net: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x0, y, t, noise = batch
        y_in = y if cfg.num_classes > 0 else None
        return baseline_loss(net(sde.perturb(x0, t, noise), net_time(t), y_in), noise)  # L_simple (U-ViT)

    def deediff(net: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0, y, t, noise = batch
        y_in = y if cfg.num_classes > 0 else None
        preds, certainties = net(sde.perturb(x0, t, noise), net_time(t), y_in, all_exits=True)  # via DDP
        terms = deediff_losses(preds, certainties, noise)
        # total = L_simple + lambda L_u + beta L_UAL (Sec. 3.3, Eq. 8; lambda = beta = 1 in the official code)
        loss = terms["simple"] + cfg.uem_weight * terms["uem"] + cfg.layerwise_weight * terms["layerwise"]
        return loss, {"simple": terms["simple"], "uem": terms["uem"], "layerwise": terms["layerwise"],
                      "mean_certainty": torch.stack([c.mean() for c in certainties]).mean()}

    return baseline if stage == "baseline" else deediff


def train(cfg: Config, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    if cfg.finetune_from_search:
        raise ValueError("finetune_from_search is resolved by the entry points (search.searched_baseline): call "
                         "main(), or pass finetune_from=<a baseline.pt>")
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size,
                         strategy=cfg.strategy)
    seed_everything(cfg.seed)
    set_torch_threads(cfg.threads)
    run = Run(out, cfg, overwrite=overwrite)
    images, labels = load_images(cfg, "train")
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    module = UViT(cfg).to(ctx.device)
    ema = copy.deepcopy(module).requires_grad_(False)
    opt = make_optimizer(cfg, module.backbone_parameters(), cfg.lr)
    weights = cfg.weights_path(out)
    stage, start, seconds = "baseline", 0, {"baseline": 0.0, "deediff": 0.0, "validation": 0.0}
    last: dict[str, float] = {}
    state = run.restore()  # the run folder's newest complete checkpoint (checkpoints/), None on a fresh run
    if cfg.finetune_from and state is None:  # DeeDiff fine-tuning of a given baseline, fresh UEMs
        load_backbone(module, Path(cfg.finetune_from))
        ema = copy.deepcopy(module).requires_grad_(False)
        opt = make_optimizer(cfg, list(module.parameters()), cfg.finetune_lr)
        stage = "deediff"
    if state is not None:  # resume from the last complete checkpoint
        stage, start, last = state["stage"], state["step"], state["last"]
        seconds.update(state["seconds"])
        if stage == "deediff":
            opt = make_optimizer(cfg, list(module.parameters()), cfg.finetune_lr)
        module.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
    model = prepare_for_stage(ctx, module, stage)
    clip = cfg.grad_clip if cfg.grad_clip > 0 else None
    scorer = ValidationScorer(cfg, cfg.finetune_eval_samples, cfg.seed + 3) if cfg.finetune_eval_every and ctx.is_main else None
    total = cfg.baseline_steps + cfg.finetune_steps
    tick = time.perf_counter()
    for step in tqdm(range(start, total), desc="train", initial=start, total=total, disable=not ctx.is_main):
        if stage == "baseline" and step >= cfg.baseline_steps:
            # DeeDiff fine-tunes the whole pretrained U-ViT (EMA weights) together with fresh UEMs (Sec. 4.1).
            module.load_state_dict(ema.state_dict())
            ema = copy.deepcopy(module).requires_grad_(False)
            opt = make_optimizer(cfg, list(module.parameters()), cfg.finetune_lr)
            stage = "deediff"
            model = prepare_for_stage(ctx, module, stage)
        stage_step = step if stage == "baseline" else step - cfg.baseline_steps
        base_lr, warmup = (cfg.lr, cfg.warmup_steps) if stage == "baseline" else (cfg.finetune_lr, cfg.finetune_warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, stage_step, base_lr, warmup)
        batch = batch_for_step(cfg, step, images, labels)  # the GLOBAL batch, identical on every rank
        stats = ctx.train_step(model, opt, batch, stage_loss(cfg, sde, stage), clip)
        update_ema(ema, module, cfg.ema_decay, stage_step, warmup=stage == "baseline")
        last = {k: v for k, v in stats.items() if k != "grad_norm"}
        if not math.isfinite(last["loss"]):
            raise FloatingPointError(f"loss became {last['loss']} at step {step} ({stage}); lower lr")
        now = time.perf_counter()
        seconds[stage] += now - tick
        tick = now
        scores: dict[str, float] = {}
        if stage == "deediff" and cfg.finetune_eval_every and (
                (stage_step + 1) % cfg.finetune_eval_every == 0 or step + 1 == total):
            if scorer is not None:
                scores = validate_snapshot(scorer, ema, weights / f"deediff-step{stage_step + 1}.pt", stage_step + 1)
            ctx.barrier()
            seconds["validation"] += time.perf_counter() - tick
            tick = time.perf_counter()
        if step % cfg.log_every == 0 or step + 1 == total or scores:
            run.log(step, stage=stage, lr=opt.param_groups[0]["lr"], **last, **scores)
        stage_done = step + 1 == cfg.baseline_steps or step + 1 == total
        if (step + 1) % cfg.checkpoint_every == 0 or stage_done:
            run.save_checkpoint({"stage": stage, "step": step + 1, "seconds": seconds, "last": last,
                                 "model": module.state_dict(),
                                 "ema": ema.state_dict(), "optimizer": opt.state_dict()}, step + 1)
        if stage_done:
            if ctx.is_main:  # the weights folder may lie outside the run folder: one writer, the others wait
                final = {"model": ema.state_dict(), "step": step + 1 - (cfg.baseline_steps if stage == "deediff" else 0)}
                if stage == "deediff" and cfg.finetune_eval_every:
                    final = load_checkpoint(weights / f"deediff-step{best_validation(run.history(), cfg)['stage_step']}.pt")
                save_checkpoint(weights / f"{stage}.pt", final)
            ctx.barrier()
    n_img = {"baseline": cfg.baseline_steps * cfg.batch_size, "deediff": cfg.finetune_steps * cfg.batch_size}
    train_seconds = seconds["baseline"] + seconds["deediff"]
    history = [r for r in run.history() if r.get("stage") == stage]  # first and final loss of the same stage
    metrics = {
        "steps": total,
        "parameters": count_parameters(module),
        "world_size": ctx.world_size,
        "precision": ctx.precision,
        "first_loss": history[0]["loss"] if history else float("nan"),
        "final_loss": last.get("loss", float("nan")),
        "steps_per_s": total / train_seconds if train_seconds > 0 else float("nan"),
        "images_per_s": total * cfg.batch_size / train_seconds if train_seconds > 0 else float("nan"),
        "peak_gpu_memory_bytes": ctx.peak_gpu_memory_bytes(),
        "baseline_seconds": seconds["baseline"],
        "finetune_seconds": seconds["deediff"],
        "validation_seconds": seconds["validation"],
        **{f"{k}_images_per_s": n_img[k] / seconds[k] for k in n_img if seconds[k] > 0},
        **{f"final_{k}": v for k, v in last.items() if k != "loss"},
    }
    if cfg.finetune_eval_every and cfg.finetune_steps and ctx.is_main:
        best = best_validation(run.history(), cfg)
        start = load_weights(Path(cfg.finetune_from) if cfg.finetune_from else weights / "baseline.pt", cfg, backbone_only=True)
        metrics.update(finetune_validation=validation_curve(run.history(), cfg),
                       finetune_selected_step=best["stage_step"], finetune_selected_val_fid=best["val_fid"],
                       finetune_selected_val_class_accuracy=best["val_class_accuracy"],
                       **{f"baseline_val_{k}": v for k, v in scorer(start.to(ctx.device)).items()})
    result = run.finish(metrics)
    ctx.close()
    return result


def validate_snapshot(scorer: ValidationScorer, ema: torch.nn.Module, path: Path, stage_step: int) -> dict[str, float]:
    """Score the full-depth EMA model on validation (training-split) statistics and save it as a snapshot."""
    scores = {f"val_{k}": v for k, v in scorer(ema.eval()).items()}
    save_checkpoint(path, {"model": ema.state_dict(), "step": stage_step, **scores})
    print(f"fine-tuning step {stage_step}: validation FID {scores['val_fid']:.2f}, "
          f"class accuracy {scores['val_class_accuracy']:.3f} (full depth, {scorer.n} samples)", flush=True)
    return scores


def validation_curve(history: list[dict[str, Any]], cfg: Config) -> list[dict[str, float]]:
    """The fine-tuning stage's validation rows of metrics.jsonl, by fine-tuning step."""
    return [{"stage_step": r["step"] + 1 - cfg.baseline_steps, "val_fid": r["val_fid"],
             "val_class_accuracy": r["val_class_accuracy"]} for r in history if "val_fid" in r]


def best_validation(history: list[dict[str, Any]], cfg: Config) -> dict[str, float]:
    """The validation row with the lowest FID (the official selection; the earlier step on a tie)."""
    return min(validation_curve(history, cfg), key=lambda r: (r["val_fid"], r["stage_step"]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__, multi_process=True)
    cfg = load_config(Config, args.config, args.overrides)
    # search trains with this module's helpers, so it is imported here rather than at the top
    from papers.deediff.search import searched_baseline

    return train(searched_baseline(cfg, Path(args.config).resolve().parent), args.out,
                 overwrite=args.overwrite)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
