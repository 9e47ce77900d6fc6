"""Train ModuleFormer or a dense baseline from scratch on the offline English corpora.

    python -m papers.moduleformer.train --config papers/moduleformer/configs/small.yaml --out runs/mf variant=moduleformer
    torchrun --nproc_per_node 2 -m papers.moduleformer.train --config ... --out runs/mf   # same global batch

Runs on CPU or CUDA (``device``, ``precision``), accumulates gradients (``micro_batch_size``) and runs under
torchrun with the same global batch and data order as one process (shared.accel.setup_training). Resumes from the
run folder's newest checkpoint; writes the final model with ``save_pretrained`` to ``<out>/model``.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from papers.moduleformer.config import Config, apply_threads, model_config
from papers.moduleformer.data import (
    get_tokenizer,
    held_out_windows,
    random_windows,
    spread_windows,
    token_stream,
)
from papers.moduleformer.modeling import ModuleFormerForCausalLM, MoE
from shared.accel import TrainContext, count_parameters, seed_everything, setup_training
from shared.metrics import causal_lm_perplexity
from shared.runs import Run, entrypoint, load_config, parse_run_args


def active_parameters(model: ModuleFormerForCausalLM) -> int:
    """Parameters used per token: everything outside the experts plus k of the E experts in every MoE."""
    idle = 0
    for moe in (m for m in model.modules() if isinstance(m, MoE)):
        n_experts = moe.experts.weight.shape[0]
        per_expert = (moe.experts.weight.numel() + moe.output_experts.weight.numel()) // n_experts
        idle += (n_experts - moe.k) * per_expert
    return count_parameters(model) - idle


def pooled_ppl(model: torch.nn.Module, windows: dict[str, torch.Tensor], seq_len: int) -> float:
    """Perplexity over the evaluation windows of all corpora together (equal tokens per corpus)."""
    device = next(model.parameters()).device
    return causal_lm_perplexity(model, torch.cat(list(windows.values())).reshape(-1), window=seq_len, batch_size=32,
                                device=device, progress=False)


def _loss(model: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    out = model(batch, labels=batch, use_cache=False)  # CE + aux_loss_weight * aux (Sec. 3.3)
    return out.loss, {"aux_loss": out.aux_loss}


def train_steps(model: torch.nn.Module, stream: torch.Tensor, cfg: Config, run: Run, ctx: TrainContext,
                params: list[torch.nn.Parameter] | None = None, steps: int | None = None, lr: float = 0.0) -> dict[str, float]:
    """AdamW with warmup and cosine decay over random windows; resumes from the run's newest checkpoint.

    ``model`` is already ``ctx.prepare``d. With ``params`` (frozen-expert extension: every other parameter has
    requires_grad=False) weight decay is off: it would shrink the frozen rows that share a tensor with the new
    experts, while Adam leaves rows with zero gradient exactly unchanged. Gradients are clipped (1.0) over the
    trained parameters only.
    """
    steps = steps or cfg.steps
    decay = cfg.weight_decay if params is None else 0.0
    params = params or [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr or cfg.lr, weight_decay=decay, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, steps)
    start, tokens, seconds, first_loss, stats = 0, 0, 0.0, math.nan, {"loss": math.nan}
    if (state := run.restore()) is not None:
        ctx.unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, tokens, seconds, first_loss = state["step"], state["tokens"], state["seconds"], state["first_loss"]
        stats["loss"] = state["loss"]
    model.train()
    for step in tqdm(range(start, steps), desc=f"train {cfg.variant}", initial=start, total=steps, disable=not ctx.is_main):
        batch = random_windows(stream, cfg.batch_size, cfg.seq_len, torch.Generator().manual_seed(cfg.seed * 100_003 + step))
        t0 = time.perf_counter()
        stats = ctx.train_step(model, opt, batch, _loss, clip_norm=1.0)
        sched.step()
        seconds += time.perf_counter() - t0
        tokens += batch.numel()
        first_loss = stats["loss"] if step == 0 else first_loss
        run.log(step, loss=stats["loss"], aux_loss=stats["aux_loss"], grad_norm=stats["grad_norm"], lr=sched.get_last_lr()[0])
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            run.save_checkpoint({"model": ctx.unwrap(model).state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                 "tokens": tokens, "seconds": seconds, "loss": stats["loss"], "first_loss": first_loss}, step + 1)
    model.eval()
    rate = lambda x: x / seconds if seconds else math.nan  # noqa: E731
    return {"train_tokens_per_s": rate(tokens), "tokens_per_s": rate(tokens), "steps_per_s": rate(tokens / (cfg.batch_size * cfg.seq_len)),
            "first_loss": first_loss, "final_loss": stats["loss"]}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__, multi_process=True)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size, strategy=cfg.strategy)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg, overwrite=args.overwrite)
    if cfg.data == "synthetic":  # Zipf-distributed random tokens: a shape and speed check whose loss can fall
        tokenizer, vocab, eos = None, cfg.vocab_size, 0
        zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
        train_stream = torch.multinomial(zipf, cfg.batch_size * cfg.seq_len * 4, replacement=True, generator=torch.Generator().manual_seed(cfg.seed))
        valid = {"synthetic": spread_windows(train_stream, cfg.eval_tokens, cfg.seq_len)}
    else:
        tokenizer = get_tokenizer(cfg.train_corpora, cfg.vocab_size, cfg.tokenizer_chars)
        vocab, eos = len(tokenizer), tokenizer.eos_token_id
        train_stream = token_stream(tokenizer, cfg.train_corpora, "train", None, cfg.corpus_chars)
        valid = held_out_windows(tokenizer, cfg.train_corpora, "validation", cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars)
    model = ctx.prepare(ModuleFormerForCausalLM(model_config(cfg, vocab, eos)))
    stats = train_steps(model, train_stream, cfg, run, ctx)
    net = ctx.unwrap(model)
    with ctx.autocast():
        stats["valid_ppl"] = pooled_ppl(net, valid, cfg.seq_len)
    stats.update(total_params=count_parameters(net), active_params=active_parameters(net), train_tokens=cfg.steps * cfg.batch_size * cfg.seq_len,
                 peak_gpu_memory_bytes=ctx.peak_gpu_memory_bytes(), world_size=ctx.world_size, precision=ctx.precision)
    if ctx.is_main:
        net.save_pretrained(run.dir / "model")
        if tokenizer is not None:
            tokenizer.save_pretrained(run.dir / "model")
    ctx.barrier()
    result = run.finish(stats)
    ctx.close()
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
