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
from papers.moduleformer.data import get_tokenizer, random_windows, token_stream
from papers.moduleformer.modeling import ModuleFormerForCausalLM
from shared.accel import count_parameters, seed_everything
from shared.metrics import causal_lm_perplexity
from shared.runs import Run, load_checkpoint, load_config, parse_run_args, save_checkpoint


def active_parameters(model: ModuleFormerForCausalLM) -> int:
    """Parameters used per token: everything outside the experts plus k of E experts in every MoE."""
    cfg = model.config
    total = count_parameters(model)
    per_att_expert = 2 * cfg.n_embd * cfg.att_hidden
    per_mlp_expert = 2 * cfg.n_embd * cfg.ffd_hidden
    idle = cfg.n_layer * ((cfg.n_att_experts - cfg.k_att) * per_att_expert + (cfg.n_mlp_experts - cfg.k_mlp) * per_mlp_expert)
    return total - idle


def train_steps(model: ModuleFormerForCausalLM, stream: torch.Tensor, cfg: Config, run: Run, ckpt: Path,
                params: list[torch.nn.Parameter] | None = None, steps: int | None = None) -> dict[str, float]:
    """AdamW with warmup and cosine decay over random windows; resumable from ``ckpt``. Returns tokens/s and loss.

    With ``params`` (frozen-expert extension) weight decay is off: it would shrink the frozen rows that share a
    tensor with the new experts, while Adam leaves rows with zero gradient exactly unchanged.
    """
    steps = steps or cfg.steps
    decay = cfg.weight_decay if params is None else 0.0
    opt = torch.optim.AdamW(params or list(model.parameters()), lr=cfg.lr, weight_decay=decay, betas=(0.9, 0.95))
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
        out = model(batch, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
    valid = token_stream(tokenizer, cfg.train_corpora, "validation", cfg.eval_tokens, cfg.corpus_chars)
    stats["valid_ppl"] = causal_lm_perplexity(model, valid, window=cfg.seq_len, batch_size=32)
    stats.update(total_params=count_parameters(model), active_params=active_parameters(model), train_tokens=cfg.steps * cfg.batch_size * cfg.seq_len)
    model.save_pretrained(run.dir / "model")
    tokenizer.save_pretrained(run.dir / "model")
    return run.finish(stats)


if __name__ == "__main__":
    main()
