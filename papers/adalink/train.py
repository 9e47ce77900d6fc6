"""Adapt a frozen causal LM to a labelled text task with one method (AdaLink, LoRA, prompt tuning or full FT).

    python -m papers.adalink.train --config papers/adalink/configs/small.yaml --out runs/adalink method=adalink lr=1e-3

Resumes from ``<out>/checkpoint.pt`` (trainable weights, optimizer, scheduler, step). Writes the adapter alone to
``<out>/adapter/`` (full FT: ``<out>/model/`` only with ``save_full_model=true``), ``predictions.json`` and metrics.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from papers.adalink.config import Config
from papers.adalink.data import Encoded, label_token_ids, prepare
from papers.adalink.methods import answer_logits, build, save_trained, trainable_parameters
from papers.adalink.models import load_base_model
from shared.accel import count_parameters, peak_memory_bytes, pick_device, seed_everything, set_torch_threads
from shared.runs import Run, load_checkpoint, load_config, parse_run_args, save_checkpoint

Batch = dict[str, torch.Tensor]


def device_of(cfg: Config) -> torch.device:
    return pick_device("cpu" if cfg.device == "auto" and not torch.cuda.is_available() else cfg.device)


@contextlib.contextmanager
def autocast(cfg: Config, device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (precision auto or bf16); float32 elsewhere."""
    if device.type == "cuda" and cfg.precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def make_model(cfg: Config, method: str | None = None) -> tuple[nn.Module, object]:
    """The base model made trainable the ``method`` way (default: cfg.method), and its tokenizer."""
    method = method or cfg.method
    base, tokenizer = load_base_model(cfg.model, cfg.dtype, seed=cfg.seed)
    model = build(method, base, adalink_rank=cfg.adalink_rank, adalink_activation=cfg.adalink_activation,
                  lora_rank=cfg.lora_paper_rank if method == "lora_paper" else cfg.lora_rank,
                  lora_alpha=cfg.lora_alpha, lora_targets=tuple(cfg.lora_targets), prompt_tokens=cfg.prompt_tokens)
    return model, tokenizer


def answer_loss(model: nn.Module, batch: Batch, label_ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the answer token over the whole vocabulary (text-to-text training, Sec. 4)."""
    return nn.functional.cross_entropy(answer_logits(model, batch).float(), label_ids[batch["labels"]])


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
               micro_batch: int, clip_norm: float | None, device: torch.device, amp: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    """One optimizer step on the global batch, in micro-batches whose summed gradients equal the batch mean's.

    Mirrors ``shared.accel``'s ``ctx.train_step`` (SHARED_API.md section 3) so the loop can switch to it.
    """
    n = len(batch["labels"])
    size = micro_batch or n
    total = 0.0
    for start in range(0, n, size):
        micro = {k: v[start:start + size].to(device) for k, v in batch.items()}
        with amp():
            loss = loss_fn(model, micro)
        (loss * len(micro["labels"]) / n).backward()
        total += loss.item() * len(micro["labels"]) / n
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, clip_norm) if clip_norm else torch.tensor(math.nan)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "grad_norm": float(norm)}


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
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    if cfg.method == "zero_shot":
        raise ValueError("method zero_shot trains nothing: run evaluate.py with method=zero_shot")
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = device_of(cfg)
    run = Run(args.out, cfg)
    model, tokenizer = make_model(cfg)
    spec, splits = prepare(cfg.task, tokenizer, cfg.split_sizes(["train", *cfg.eval_splits]), cfg.max_field_tokens,
                           cfg.data_seed, cfg.data_dir)
    label_ids = torch.tensor(label_token_ids(tokenizer, spec), device=device)
    model.to(device)
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps)
    ckpt = run.dir / "checkpoint.pt"
    start, tokens, seconds, first_loss, loss = 0, 0, 0.0, math.nan, math.nan
    if ckpt.exists():  # resume from the last complete checkpoint
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["trainable"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, tokens, seconds, first_loss, loss = (state[k] for k in ("step", "tokens", "seconds", "first_loss", "loss"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    amp = lambda: autocast(cfg, device)  # noqa: E731
    loss_fn = lambda m, b: answer_loss(m, b, label_ids)  # noqa: E731
    for step in tqdm(range(start, cfg.steps), desc=f"train {cfg.method}", initial=start, total=cfg.steps, disable=None):
        batch = draw_batch(splits["train"], cfg.batch_size, cfg.seed, step)
        t0 = time.perf_counter()
        stats = train_step(model, opt, batch, loss_fn, cfg.micro_batch_size, cfg.clip_norm, device, amp)
        sched.step()
        seconds += time.perf_counter() - t0
        tokens += int(batch["attention_mask"].sum())
        loss = stats["loss"]
        first_loss = loss if step == 0 else first_loss
        run.log(step, **stats, lr=sched.get_last_lr()[0])
        done = step + 1
        if done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            save_checkpoint(ckpt, {"trainable": trainable_state(model), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict(), "step": done, "tokens": tokens,
                                   "seconds": seconds, "first_loss": first_loss, "loss": loss})
    metrics: dict[str, object] = {
        "method": cfg.method, "lr": cfg.lr, "seed": cfg.seed, "steps": cfg.steps, "first_loss": first_loss,
        "final_loss": loss, "trainable_params": sum(p.numel() for p in params), "total_params": count_parameters(model),
        "train_tokens_per_s": tokens / seconds if seconds else math.nan, "steps_per_s": cfg.steps / seconds if seconds else math.nan,
        "peak_gpu_memory_bytes": peak_memory_bytes(device) if device.type == "cuda" else 0,
    }
    metrics["tokens_per_s"] = metrics["train_tokens_per_s"]
    saved = save_trained(cfg.method, model, run.dir / ("model" if cfg.method == "full_ft" else "adapter"), cfg.save_full_model)
    if saved is not None:
        metrics["saved_bytes"] = sum(f.stat().st_size for f in Path(saved).rglob("*") if f.is_file())
    predictions = {}
    for split in cfg.eval_splits:
        result = evaluate_split(model, splits[split], label_ids, cfg.eval_batch_size, device, amp)
        predictions[split] = result.pop("correct")
        metrics.update({f"{split}_{k}": v for k, v in result.items()})
    (run.dir / "predictions.json").write_text(json.dumps(predictions))
    if not cfg.keep_checkpoint:
        ckpt.unlink(missing_ok=True)
    return run.finish(metrics)


if __name__ == "__main__":
    main()
