"""Evaluate a trained run: validation/test perplexity and generation speed.

    python -m papers.moduleformer.evaluate --config papers/moduleformer/configs/small.yaml --out runs/mf
(``--out`` is the training run's directory; eval.json is written there.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from papers.moduleformer import modeling  # noqa: F401  (registers the model with the Auto classes)
from papers.moduleformer.config import Config, apply_threads
from papers.moduleformer.data import held_out_windows, token_stream
from papers.moduleformer.train import pooled_ppl
from shared.accel import Timer
from shared.metrics import causal_lm_perplexity
from shared.runs import UserError, entrypoint, load_config, parse_run_args


@torch.no_grad()
def generation_tokens_per_s(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> float:
    """Greedy decoding with the KV cache at batch 1; new tokens per second."""
    model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, min_new_tokens=2, do_sample=False)
    with Timer() as timer:
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return new_tokens / timer.seconds


def split_ppl(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, cfg: Config, corpora: list[str], split: str) -> dict[str, float]:
    """``{split}_ppl`` pooled over ``corpora`` and ``{split}_ppl_{corpus}`` each, on windows spread over all documents."""
    windows = held_out_windows(tokenizer, corpora, split, cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars)
    metrics = {f"{split}_ppl": pooled_ppl(model, windows, cfg.seq_len)}
    for name, w in windows.items():
        metrics[f"{split}_ppl_{name}"] = causal_lm_perplexity(model, w.reshape(-1), window=cfg.seq_len, batch_size=32, progress=False)
    return metrics


def evaluate_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, cfg: Config, corpora: list[str]) -> dict[str, float]:
    metrics = {**split_ppl(model, tokenizer, cfg, corpora, "validation"), **split_ppl(model, tokenizer, cfg, corpora, "test")}
    prompt = token_stream(tokenizer, corpora, "test", 16, cfg.corpus_chars)[None]
    metrics["generate_tokens_per_s"] = generation_tokens_per_s(model, prompt, cfg.gen_tokens)
    return metrics


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    model_dir = Path(args.out) / "model"
    if not model_dir.is_dir():
        raise UserError(f"no trained model in {model_dir}; run papers.moduleformer.train with --out {args.out} first")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    metrics = evaluate_model(model, tokenizer, cfg, cfg.train_corpora)
    (Path(args.out) / "eval.json").write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
