"""Adapt a frozen causal LM to a labelled text task with one method (AdaLink, LoRA, prompt tuning or full FT).

    python -m papers.adalink.train --config papers/adalink/configs/small.yaml --out runs/adalink method=adalink lr=1e-3
    torchrun --nproc_per_node 2 -m papers.adalink.train ...   # same global batch and data order, DDP

Runs on CPU or CUDA (``device``, ``precision``: bf16 autocast on recent GPUs) with gradient accumulation
(``micro_batch_size``) through ``shared.accel.setup_training``. Resumes from the run folder's newest checkpoint
(trainable weights, optimizer, scheduler, step). Writes the adapter alone to
``<out>/adapter/`` (full FT: ``<out>/model/`` only with ``save_full_model=true``), ``predictions.json`` and metrics.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from papers.adalink.config import Config
from papers.adalink.data import Encoded, label_token_ids, prepare
from papers.adalink.methods import answer_logits, build, position_offset, save_trained, trainable_parameters
from papers.adalink.models import load_base_model
from shared.accel import count_parameters, seed_everything, set_torch_threads, setup_training
from shared.runs import Run, entrypoint, load_config, parse_run_args

Batch = dict[str, torch.Tensor]


def make_model(cfg: Config, method: str | None = None) -> tuple[nn.Module, object]:
    """The base model made trainable the ``method`` way (default: cfg.method), and its tokenizer."""
    method = method or cfg.method
    base, tokenizer = load_base_model(cfg.model, cfg.dtype, seed=cfg.seed)
    model = build(method, base, adalink_rank=cfg.adalink_rank, adalink_activation=cfg.adalink_activation,
                  lora_rank=cfg.lora_paper_rank if method == "lora_paper" else cfg.lora_rank,
                  lora_alpha=cfg.lora_alpha, lora_targets=tuple(cfg.lora_targets), prompt_tokens=cfg.prompt_tokens)
    return model, tokenizer


def answer_loss(model: nn.Module, batch: Batch, label_ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Cross-entropy of the answer token over the whole vocabulary (text-to-text training, Sec. 4)."""
    return nn.functional.cross_entropy(answer_logits(model, batch, offset).float(), label_ids[batch["labels"]])


def draw_batch(data: Encoded, batch_size: int, seed: int, step: int) -> Batch:
    """The global batch of ``step``: rows drawn without replacement by a generator seeded from (seed, step)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + step)
    return data.rows(torch.randperm(len(data), generator=gen)[:batch_size])


@torch.no_grad()
def evaluate_split(model: nn.Module, data: Encoded, label_ids: torch.Tensor, batch_size: int, device: torch.device,
                   amp: Callable[[], contextlib.AbstractContextManager]) -> dict[str, object]:
    """Accuracy (argmax over the answer words), mean answer loss, per-row correctness and forward tokens/s."""
    was_training = model.training
    model.eval()
    correct, losses, tokens, seconds = [], [], 0, 0.0
    for start in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in data.rows(torch.arange(start, min(start + batch_size, len(data)))).items()}
        t0 = time.perf_counter()
        with amp():
            logits = answer_logits(model, batch).float()
        seconds += time.perf_counter() - t0
        tokens += int(batch["attention_mask"].sum())
        losses.append(nn.functional.cross_entropy(logits, label_ids[batch["labels"]], reduction="none").cpu())
        correct.append((logits[:, label_ids].argmax(1) == batch["labels"]).cpu())
    model.train(was_training)
    hits = torch.cat(correct)
    return {"accuracy": hits.float().mean().item(), "answer_loss": torch.cat(losses).mean().item(),
            "correct": hits.int().tolist(), "tokens_per_s": tokens / seconds if seconds else math.nan}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__, multi_process=True)
    cfg = load_config(Config, args.config, args.overrides)
    if cfg.method == "zero_shot":
        raise ValueError("method zero_shot trains nothing: run evaluate.py with method=zero_shot")
    set_torch_threads(cfg.threads)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size,
                         strategy=cfg.strategy)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg, overwrite=args.overwrite)
    model, tokenizer = make_model(cfg)
    spec, splits = prepare(cfg.task, tokenizer, cfg.split_sizes(["train", *cfg.eval_splits]), cfg.max_field_tokens,
                           cfg.data_seed, cfg.data_dir)
    label_ids = torch.tensor(label_token_ids(tokenizer, spec), device=ctx.device)
    offset = position_offset(model)
    params = trainable_parameters(model)
    model = ctx.prepare(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps)
    start, tokens, seconds, first_loss, loss = 0, 0, 0.0, math.nan, math.nan
    if (state := run.restore()) is not None:
        ctx.unwrap(model).load_state_dict(state["trainable"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, tokens, seconds, first_loss, loss = (state[k] for k in ("step", "tokens", "seconds", "first_loss", "loss"))
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    model.train()
    loss_fn = lambda m, b: answer_loss(m, b, label_ids, offset)  # noqa: E731
    for step in tqdm(range(start, cfg.steps), desc=f"train {cfg.method}", initial=start, total=cfg.steps,
                     disable=None if ctx.is_main else True):
        batch = draw_batch(splits["train"], cfg.batch_size, cfg.seed, step)  # the global batch, the same on every rank
        t0 = time.perf_counter()
        stats = ctx.train_step(model, opt, batch, loss_fn, clip_norm=cfg.clip_norm or None)
        sched.step()
        seconds += time.perf_counter() - t0
        tokens += int(batch["attention_mask"].sum())
        loss = stats["loss"]
        first_loss = loss if step == 0 else first_loss
        run.log(step, **stats, lr=sched.get_last_lr()[0])
        done = step + 1
        if done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            run.save_checkpoint({"trainable": trainable_state(ctx.unwrap(model)), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "tokens": tokens, "seconds": seconds,
                                 "first_loss": first_loss, "loss": loss}, done)
    model = ctx.unwrap(model)
    metrics: dict[str, object] = {
        "method": cfg.method, "lr": cfg.lr, "seed": cfg.seed, "steps": cfg.steps, "first_loss": first_loss,
        "final_loss": loss, "trainable_params": sum(p.numel() for p in params), "total_params": count_parameters(model),
        "train_tokens_per_s": tokens / seconds if seconds else math.nan,
        "steps_per_s": cfg.steps / seconds if seconds else math.nan,
        "peak_gpu_memory_bytes": ctx.peak_gpu_memory_bytes(), "world_size": ctx.world_size,
    }
    metrics["tokens_per_s"] = metrics["train_tokens_per_s"]
    if ctx.is_main:  # every rank holds the same weights; one writes and evaluates
        saved = save_trained(cfg.method, model, run.dir / ("model" if cfg.method == "full_ft" else "adapter"),
                             cfg.save_full_model)
        if saved is not None:
            metrics["saved_bytes"] = sum(f.stat().st_size for f in Path(saved).rglob("*") if f.is_file())
        predictions = {}
        for split in cfg.eval_splits:
            result = evaluate_split(model, splits[split], label_ids, cfg.eval_batch_size, ctx.device, ctx.autocast)
            predictions[split] = result.pop("correct")
            metrics.update({f"{split}_{k}": v for k, v in result.items()})
        (run.dir / "predictions.json").write_text(json.dumps(predictions))
        if not cfg.keep_checkpoint:
            shutil.rmtree(run.dir / "checkpoints", ignore_errors=True)
    ctx.barrier()
    result = run.finish(metrics)
    ctx.close()
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
