"""Perplexity of a pruned model on held-out documents: ``python -m papers.owl.evaluate --config FILE --out RUN``.

``RUN`` is a directory written by ``train`` (it reads ``RUN/pruned_model``); with ``method=dense`` the unpruned
model is evaluated instead.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM

from papers.owl.config import Config
from papers.owl.models import DTYPES, load_model, model_device
from papers.owl.pipeline import evaluation_tokens, perplexities, write_json
from papers.owl.sequential import overall_sparsity
from shared.accel import set_torch_threads
from shared.runs import load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype)
    if cfg.method != "dense":
        saved = f"{args.out}/pruned_model"
        try:
            pruned = AutoModelForCausalLM.from_pretrained(saved, dtype=DTYPES[cfg.dtype])
            model = pruned.to(model_device(model)).eval()
        except OSError as err:
            raise FileNotFoundError(f"no pruned model at {saved}: run papers.owl.train with save_model=true first") from err
    tokens = evaluation_tokens(cfg, tokenizer)
    metrics = {**perplexities(model, tokens, cfg.eval_window, cfg.progress), "overall_sparsity": overall_sparsity(model),
               "eval_tokens": int(sum(t.numel() for t in tokens.values()))}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out, "eval.json"), metrics)
    print(metrics)
    return metrics


if __name__ == "__main__":
    main()
