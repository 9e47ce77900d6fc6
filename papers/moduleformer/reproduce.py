"""The CPU-scale reproduction: ModuleFormer vs two dense baselines, then extendability and specialisation.

    python -m papers.moduleformer.reproduce --config papers/moduleformer/configs/small.yaml --out papers/moduleformer/results/small
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from papers.moduleformer import evaluate, train
from papers.moduleformer.config import Config, apply_threads
from papers.moduleformer.data import random_windows, token_stream
from papers.moduleformer.surgery import add_experts, expert_usage, prune_experts
from shared.accel import Timer
from shared.metrics import causal_lm_perplexity
from shared.runs import Run, load_config, parse_run_args

VARIANTS = ("moduleformer", "dense_active", "dense_total")
PAPER = "MoLM-350M-4B: 71,017 train tok/s, WikiText ppl 15.15; Pythia-1.4B (dense): 35,559 tok/s, ppl 14.71"


def _load(run_dir: Path) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    return AutoModelForCausalLM.from_pretrained(run_dir / "model").eval(), PreTrainedTokenizerFast.from_pretrained(run_dir / "model")


def _ppl(model: torch.nn.Module, stream: torch.Tensor, cfg: Config) -> float:
    return causal_lm_perplexity(model, stream, window=cfg.seq_len, batch_size=32, progress=False)


@torch.no_grad()
def _forward_tokens_per_s(model: torch.nn.Module, windows: torch.Tensor, repeats: int = 5) -> float:
    """Median over ``repeats`` timed forward passes, after one warm-up."""
    model(windows[:1])
    seconds = []
    for _ in range(repeats):
        with Timer() as timer:
            model(windows)
        seconds.append(timer.seconds)
    return windows.numel() / sorted(seconds)[repeats // 2]


def extendability(cfg: Config, out: Path, streams: dict[str, torch.Tensor]) -> list[dict[str, object]]:
    """New experts learn domain B with the old ones frozen, against fully fine-tuning the dense model on B."""
    rows = []
    for variant, how in (("moduleformer", "new experts only"), ("dense_active", "full fine-tune")):
        model, _ = _load(out / variant)
        before = {d: _ppl(model, streams[f"{d}_valid"], cfg) for d in ("A", "B")}
        params = add_experts(model, cfg.new_experts) if variant == "moduleformer" else None
        run = Run(out / f"extend_{variant}", cfg)
        train.train_steps(model, streams["B_train"], cfg, run, run.dir / "checkpoint.pt", params=params, steps=cfg.extend_steps)
        after = {d: _ppl(model, streams[f"{d}_valid"], cfg) for d in ("A", "B")}
        run.finish({"A_before": before["A"], "A_after": after["A"], "B_before": before["B"], "B_after": after["B"]})
        rows.append({"model": variant, "trained on B": how, "A ppl before": before["A"], "A ppl after": after["A"],
                     "forgetting (A after / before)": after["A"] / before["A"], "B ppl before": before["B"], "B ppl after": after["B"]})
    return rows


def specialisation(cfg: Config, out: Path, streams: dict[str, torch.Tensor]) -> dict[str, object]:
    """Prune the experts domain A rarely routes to; perplexity on A and forward speed before and after."""
    model, _ = _load(out / "moduleformer")
    windows = random_windows(streams["A_valid"], 16, cfg.seq_len, torch.Generator().manual_seed(cfg.seed))
    before = {"ppl": _ppl(model, streams["A_valid"], cfg), "tok_s": _forward_tokens_per_s(model, windows)}
    usage = expert_usage(model, windows)
    total = sum(len(u) for u in usage.values())
    kept = prune_experts(model, usage, cfg.prune_min_share)
    after = {"ppl": _ppl(model, streams["A_valid"], cfg), "tok_s": _forward_tokens_per_s(model, windows)}
    return {"experts kept": f"{sum(kept.values())}/{total}", "A ppl before": before["ppl"], "A ppl after": after["ppl"],
            "forward tok/s before": before["tok_s"], "forward tok/s after": after["tok_s"]}


def plot_usage(cfg: Config, out: Path, streams: dict[str, torch.Tensor]) -> None:
    """Heat maps of attention- and MLP-expert usage per layer on domain A (training text) and domain B (unseen)."""
    model, _ = _load(out / "moduleformer")
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), squeeze=False)
    for col, domain in enumerate(("A", "B")):
        windows = random_windows(streams[f"{domain}_valid"], 16, cfg.seq_len, torch.Generator().manual_seed(cfg.seed))
        usage = expert_usage(model, windows)
        for row, (kind, suffix) in enumerate((("attention", ".attn.q_moe"), ("MLP", ".mlp"))):
            shares = torch.stack([v for k, v in usage.items() if k.endswith(suffix)]).numpy()
            ax = axes[row, col]
            image = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0)
            ax.set_xticks(range(shares.shape[1]))
            ax.set_yticks(range(shares.shape[0]))
            ax.tick_params(labelsize=7)
            name = "+".join(cfg.train_corpora) if domain == "A" else cfg.extend_corpus
            ax.set(title=f"{kind} experts, domain {domain} ({name})", xlabel=f"{kind} expert", ylabel="layer")
            fig.colorbar(image, ax=ax, label="share of routed slots")
    fig.tight_layout()
    fig.savefig(out / "expert_usage.png", dpi=110)
    plt.close(fig)


def plot_curves(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in VARIANTS:
        rows = [json.loads(line) for line in (out / variant / "metrics.jsonl").read_text().splitlines()]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=variant, alpha=0.8)
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title="same tokens, same steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=120)
    plt.close(fig)


def _table(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows])


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    out = Path(args.out)
    start = time.perf_counter()
    main_rows = []
    for variant in VARIANTS:
        common = ["--config", args.config, "--out", str(out / variant), *args.overrides, f"variant={variant}"]
        stats = train.main(common)
        metrics = evaluate.main(common)
        main_rows.append({"model": variant, "total params": stats["total_params"], "active params": stats["active_params"],
                          "train tok/s": stats["train_tokens_per_s"], "valid ppl": metrics["validation_ppl"],
                          "test ppl": metrics["test_ppl"], "generate tok/s": metrics["generate_tokens_per_s"]})
    _, tokenizer = _load(out / "moduleformer")
    streams = {"A_valid": token_stream(tokenizer, cfg.train_corpora, "validation", cfg.eval_tokens, cfg.corpus_chars),
               "B_valid": token_stream(tokenizer, [cfg.extend_corpus], "validation", cfg.eval_tokens, cfg.corpus_chars),
               "B_train": token_stream(tokenizer, [cfg.extend_corpus], "train", None, cfg.corpus_chars)}
    extend_rows = extendability(cfg, out, streams)
    special = specialisation(cfg, out, streams)
    plot_usage(cfg, out, streams)
    plot_curves(out)
    results = {"main": main_rows, "extendability": extend_rows, "specialisation": special,
               "paper": PAPER, "minutes": (time.perf_counter() - start) / 60}
    report = (f"## Same tokens: ModuleFormer vs dense\n\n{_table(main_rows)}\n\nPaper: {PAPER}\n\n"
              f"## Extendability (domain B = {cfg.extend_corpus})\n\n{_table(extend_rows)}\n\n"
              f"## Specialisation (prune experts domain A rarely uses)\n\n{_table([special])}\n\n"
              f"Wall time: {results['minutes']:.1f} min\n")
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(report)
    return results


if __name__ == "__main__":
    main()
