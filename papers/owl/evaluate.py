"""Perplexity of a pruned model on held-out documents, and zero-shot accuracy through lm-evaluation-harness
when ``zero_shot_tasks`` is set: ``python -m papers.owl.evaluate --config FILE --out RUN``.

``RUN`` is a directory written by ``train`` (it reads ``RUN/pruned_model``); with ``method=dense`` the unpruned
model is evaluated instead.
"""

from __future__ import annotations

from pathlib import Path

from papers.owl.config import Config
from papers.owl.export import load_pruned
from papers.owl.models import DTYPES, load_model
from papers.owl.offload import execution_device, offload_blocks
from papers.owl.pipeline import evaluation_tokens, perplexities, sparsity_columns, write_json
from papers.owl.sequential import find_decoder_blocks
from papers.owl.zeroshot import zero_shot
from shared.accel import set_torch_threads
from shared.runs import UserError, entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype, cfg.offload)
    if cfg.method != "dense":
        saved = Path(args.out, "pruned_model")
        if not (saved / "config.json").is_file():
            raise FileNotFoundError(f"no pruned model at {saved}: run papers.owl.train with save_model=true first")
        device = execution_device(model)
        offloaded = next(find_decoder_blocks(model).parameters()).device != device
        model = load_pruned(saved, DTYPES[cfg.dtype])
        if offloaded:
            offload_blocks(model, find_decoder_blocks(model), device)
        else:
            model = model.to(device)
    tokens = evaluation_tokens(cfg, tokenizer, "test")
    metrics = {**perplexities(model, tokens, cfg.eval_window, cfg.progress), **sparsity_columns(model),
               "eval_tokens": {name: int(t.numel()) for name, t in tokens.items()}}
    if cfg.zero_shot_tasks:
        if tokenizer is None:
            raise UserError(f"zero-shot tasks need a model with a tokenizer; {cfg.model} is byte-level")
        metrics["zero_shot"] = zero_shot(model, tokenizer, cfg.zero_shot_tasks, include_path=cfg.zero_shot_include,
                                         limit=cfg.zero_shot_limit, batch_size=cfg.zero_shot_batch_size,
                                         add_bos=cfg.eval_bos)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out, "eval.json"), metrics)
    print(metrics)
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
