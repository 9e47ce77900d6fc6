"""Train ModuleFormer or a dense baseline from scratch on the offline English corpora.

    python -m papers.moduleformer.train --config papers/moduleformer/configs/small.yaml --out runs/mf variant=moduleformer

Resumes from ``<out>/checkpoint.pt`` when it exists; writes the final model with ``save_pretrained`` to ``<out>/model``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from papers.moduleformer.config import Config, apply_threads, model_config
from papers.moduleformer.data import get_tokenizer, held_out_windows, random_windows, token_stream
from papers.moduleformer.modeling import ModuleFormerForCausalLM, MoE
from shared.accel import count_parameters, seed_everything
from shared.metrics import causal_lm_perplexity
from shared.runs import Run, load_checkpoint, load_config, parse_run_args, save_checkpoint


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
    return causal_lm_perplexity(model, torch.cat(list(windows.values())).reshape(-1), window=seq_len, batch_size=32, progress=False)


def train_steps(model: ModuleFormerForCausalLM, stream: torch.Tensor, cfg: Config, run: Run, ckpt: Path,
                params: list[torch.nn.Parameter] | None = None, steps: int | None = None, lr: float = 0.0) -> dict[str, float]:
    """AdamW with warmup and cosine decay over random windows; resumable from ``ckpt``. Returns tokens/s and loss.

    With ``params`` (frozen-expert extension: every other parameter has requires_grad=False) weight decay is off:
    it would shrink the frozen rows that share a tensor with the new experts, while Adam leaves rows with zero
    gradient exactly unchanged. Gradients are clipped over the trained parameters only.
    """
    steps = steps or cfg.steps
    decay = cfg.weight_decay if params is None else 0.0
    params = params or [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr or cfg.lr, weight_decay=decay, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, steps)
    if ckpt.exists():  # resume from the last complete checkpoint
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        loss = torch.tensor(state["loss"])
        start, tokens, seconds = state["step"], state["tokens"], state["seconds"]
    else:
        start, tokens, seconds, loss = 0, 0, 0.0, torch.tensor(float("nan"))
    model.train()
    for step in tqdm(range(start, steps), desc=f"train {cfg.variant}", initial=start, total=steps):
        batch = random_windows(stream, cfg.batch_size, cfg.seq_len, torch.Generator().manual_seed(cfg.seed * 100_003 + step))
        t0 = time.perf_counter()
        out = model(batch, labels=batch, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t0
        tokens += batch.numel()
        loss = out.loss.detach()
        run.log(step, loss=loss.item(), aux_loss=out.aux_loss.item(), lr=sched.get_last_lr()[0])
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                   "step": step + 1, "tokens": tokens, "seconds": seconds, "loss": loss.item()})
    model.eval()
    return {"train_tokens_per_s": tokens / seconds if seconds else math.nan, "final_loss": loss.item()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg)
    tokenizer = get_tokenizer(cfg.train_corpora, cfg.vocab_size, cfg.tokenizer_chars)
    train_stream = token_stream(tokenizer, cfg.train_corpora, "train", None, cfg.corpus_chars)
    model = ModuleFormerForCausalLM(model_config(cfg, len(tokenizer), tokenizer.eos_token_id))
    stats = train_steps(model, train_stream, cfg, run, run.dir / "checkpoint.pt")
    valid = held_out_windows(tokenizer, cfg.train_corpora, "validation", cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars)
    stats["valid_ppl"] = pooled_ppl(model, valid, cfg.seq_len)
    stats.update(total_params=count_parameters(model), active_params=active_parameters(model), train_tokens=cfg.steps * cfg.batch_size * cfg.seq_len)
    model.save_pretrained(run.dir / "model")
    tokenizer.save_pretrained(run.dir / "model")
    return run.finish(stats)


if __name__ == "__main__":
    main()
