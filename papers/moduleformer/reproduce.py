"""The CPU-scale reproduction: ModuleFormer vs two dense baselines, then extendability and specialisation.

    python -m papers.moduleformer.reproduce --config papers/moduleformer/configs/small.yaml --out build/reproduce/moduleformer/small

Each variant's learning rate is chosen on validation perplexity (``lr_grid``, first seed), then every variant runs
all ``seeds`` at its chosen lr; tables give mean and sample standard deviation over seeds of *test* perplexity, and
a gap between two models counts only when the 95% t-interval of their per-seed differences excludes 0. The experts
to prune are chosen on validation windows; perplexity after pruning is measured on test windows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from scipy import stats as scipy_stats
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from papers.moduleformer import evaluate, train
from papers.moduleformer.config import Config, apply_threads
from papers.moduleformer.data import held_out_windows, token_stream
from papers.moduleformer.surgery import add_experts, expert_usage, prune_experts
from shared.accel import Timer, setup_training
from shared.runs import Run, entrypoint, load_config, parse_run_args

VARIANTS = ("moduleformer", "dense_active", "dense_total")
PAPER = ("MoLM-350M-4B: 71,017 tok/s (official README, throughput column; not stated to be training throughput), "
         "WikiText ppl 15.15; Pythia-1.4B (dense): 35,559 tok/s, ppl 14.71")


def _load(run_dir: Path) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    return AutoModelForCausalLM.from_pretrained(run_dir / "model").eval(), PreTrainedTokenizerFast.from_pretrained(run_dir / "model")


@torch.no_grad()
def _forward_tokens_per_s(model: torch.nn.Module, windows: torch.Tensor, repeats: int = 5) -> float:
    """Median over ``repeats`` timed forward passes, after one warm-up."""
    model(windows[:1], use_cache=False)
    seconds = []
    for _ in range(repeats):
        with Timer() as timer:
            model(windows, use_cache=False)
        seconds.append(timer.seconds)
    return windows.numel() / statistics.median(seconds)


def unigram_ppl(train_stream: torch.Tensor, windows: dict[str, torch.Tensor], vocab: int) -> float:
    """Perplexity of add-one unigram counts of the training stream on the windows' next tokens: the floor a
    working language model must beat."""
    logp = torch.log((torch.bincount(train_stream, minlength=vocab).double() + 1) / (len(train_stream) + vocab))
    targets = torch.cat([w[:, 1:].reshape(-1) for w in windows.values()])
    return math.exp(-logp[targets].mean().item())


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):,.2f} ± {statistics.stdev(values):,.2f}" if len(values) > 1 else f"{values[0]:,.2f}"


def paired_gap(a: list[float], b: list[float]) -> dict[str, object]:
    """Mean of a - b over seeds, its 95% t-interval, and the verdict ("lower", "higher" or "no gap")."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return {"diff": mean, "half_width": math.nan, "verdict": "no gap (one seed)"}
    half = scipy_stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    verdict = "no gap" if abs(mean) <= half else ("lower" if mean < 0 else "higher")
    return {"diff": mean, "half_width": half, "verdict": verdict}


def train_and_evaluate(config: str, overrides: list[str], out: Path) -> dict[str, float]:
    common = ["--config", config, "--out", str(out), *overrides]
    return {**train.main(common), **evaluate.main(common)}


def pretrain(cfg: Config, config: str, overrides: list[str], out: Path) -> dict[str, dict]:
    """lr sweep on the first seed (choice by validation ppl), then the other seeds at the chosen lr."""
    runs: dict[str, dict] = {}
    for variant in VARIANTS:
        sweep = {}
        for lr in cfg.lr_grid or [cfg.lr]:
            sweep[lr] = train_and_evaluate(config, [*overrides, f"variant={variant}", f"seed={cfg.seeds[0]}", f"lr={lr}"],
                                           out / "sweep" / variant / f"lr{lr:g}")
        best = min(sweep, key=lambda lr: sweep[lr]["validation_ppl"])
        seeds = {cfg.seeds[0]: {**sweep[best], "dir": str(out / "sweep" / variant / f"lr{best:g}")}}
        for seed in cfg.seeds[1:]:
            run_dir = out / variant / f"seed{seed}"
            seeds[seed] = {**train_and_evaluate(config, [*overrides, f"variant={variant}", f"seed={seed}", f"lr={best}"], run_dir), "dir": str(run_dir)}
        runs[variant] = {"lr": best, "sweep_validation_ppl": {f"{lr:g}": r["validation_ppl"] for lr, r in sweep.items()}, "seeds": seeds}
    return runs


def extendability(cfg: Config, runs: dict, streams: dict) -> dict[str, list[dict[str, float]]]:
    """New experts learn domain B with everything else frozen, against fully fine-tuning the same-active dense model."""
    rows: dict[str, list[dict[str, float]]] = {}
    for variant in ("moduleformer", "dense_active"):
        rows[variant] = []
        for seed, run in runs[variant]["seeds"].items():
            model, _ = _load(Path(run["dir"]))
            seeded = dataclasses.replace(cfg, seed=seed)
            before = {d: train.pooled_ppl(model, streams[f"{d}_test"], cfg.seq_len) for d in ("A", "B")}
            params = add_experts(model, cfg.new_experts) if variant == "moduleformer" else None
            run_log = Run(Path(run["dir"]).parent / f"extend_{Path(run['dir']).name}", seeded)
            ctx = setup_training("cpu", "fp32", global_batch=cfg.batch_size)  # model and surgery stay on the CPU
            train.train_steps(model, streams["B_train"], seeded, run_log, ctx, params=params,
                              steps=cfg.extend_steps, lr=cfg.extend_lr or runs[variant]["lr"])
            after = {d: train.pooled_ppl(model, streams[f"{d}_test"], cfg.seq_len) for d in ("A", "B")}
            row = {"A_before": before["A"], "A_after": after["A"], "forgetting": after["A"] / before["A"],
                   "B_before": before["B"], "B_after": after["B"]}
            run_log.finish(row)
            rows[variant].append(row)
    return rows


def specialisation(cfg: Config, runs: dict, streams: dict) -> list[dict[str, float]]:
    """Prune the experts domain A's validation windows rarely route to; test perplexity and forward speed around it."""
    rows = []
    for run in runs["moduleformer"]["seeds"].values():
        model, _ = _load(Path(run["dir"]))
        timing = torch.cat(list(streams["A_test"].values()))[:16]
        before = {"ppl": train.pooled_ppl(model, streams["A_test"], cfg.seq_len), "tok_s": _forward_tokens_per_s(model, timing)}
        usage = expert_usage(model, torch.cat(list(streams["A_valid"].values())))
        total = sum(len(u) for u in usage.values())
        kept = sum(prune_experts(model, usage, cfg.prune_min_share).values())
        after = {"ppl": train.pooled_ppl(model, streams["A_test"], cfg.seq_len), "tok_s": _forward_tokens_per_s(model, timing)}
        rows.append({"kept": kept, "total": total, "ppl_before": before["ppl"], "ppl_after": after["ppl"],
                     "tok_s_before": before["tok_s"], "tok_s_after": after["tok_s"]})
    return rows


def plot_usage(cfg: Config, run_dir: Path, streams: dict, out: Path) -> None:
    """Heat maps of attention- and MLP-expert usage per layer on domain A and domain B validation windows."""
    model, _ = _load(run_dir)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), squeeze=False)
    for col, domain in enumerate(("A", "B")):
        usage = expert_usage(model, torch.cat(list(streams[f"{domain}_valid"].values())))
        for row, (kind, suffix) in enumerate((("attention", ".attn.q_proj"), ("MLP", ".mlpf"))):
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


def plot_curves(runs: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, color in zip(VARIANTS, ("C0", "C1", "C2"), strict=True):
        for i, run in enumerate(runs[variant]["seeds"].values()):
            rows = [json.loads(line) for line in (Path(run["dir"]) / "metrics.jsonl").read_text().splitlines()]
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=color, alpha=0.6, lw=0.8,
                    label=f"{variant} (lr {runs[variant]['lr']:g})" if i == 0 else None)
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title="same tokens, same steps, every seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=120)
    plt.close(fig)


def _table(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows])


def report(cfg: Config, runs: dict, extend: dict, special: list, unigram: float) -> tuple[str, dict]:
    """The markdown tables and the gated verdicts."""
    col = lambda v, key: [r[key] for r in runs[v]["seeds"].values()]  # noqa: E731
    main_rows = [{"model": v, "lr (chosen on valid)": f"{runs[v]['lr']:g}", "total params": runs[v]["seeds"][cfg.seeds[0]]["total_params"],
                  "active params": runs[v]["seeds"][cfg.seeds[0]]["active_params"],
                  "valid ppl": mean_sd(col(v, "validation_ppl")), "test ppl": mean_sd(col(v, "test_ppl")),
                  **{f"test ppl {c}": mean_sd(col(v, f"test_ppl_{c}")) for c in cfg.train_corpora},
                  "train tok/s (median)": statistics.median(col(v, "train_tokens_per_s")),
                  "generate tok/s (median)": statistics.median(col(v, "generate_tokens_per_s"))} for v in VARIANTS]
    works = {v: max(col(v, "test_ppl")) < unigram for v in VARIANTS}
    verdicts = {}
    for base in ("dense_active", "dense_total"):
        if not (works[base] and works["moduleformer"]):
            verdicts[base] = {"verdict": f"withheld: a model does not beat the unigram test ppl {unigram:.1f}"}
            continue
        verdicts[base] = paired_gap(col("moduleformer", "test_ppl"), col(base, "test_ppl"))
    gap_rows = [{"ModuleFormer minus": b, "test ppl difference": v.get("diff", math.nan), "95% half-width": v.get("half_width", math.nan),
                 "ModuleFormer is": v["verdict"]} for b, v in verdicts.items()]
    ext = {v: {"forgetting": [r["forgetting"] for r in rows], "B_after": [r["B_after"] for r in rows]} for v, rows in extend.items()}
    ext_rows = [{"model": v, "trained on B": "new experts only (rest frozen)" if v == "moduleformer" else "full fine-tune",
                 "A test ppl before": mean_sd([r["A_before"] for r in rows]), "A test ppl after": mean_sd([r["A_after"] for r in rows]),
                 "forgetting (after/before)": mean_sd(ext[v]["forgetting"]), "B test ppl before": mean_sd([r["B_before"] for r in rows]),
                 "B test ppl after": mean_sd(ext[v]["B_after"])} for v, rows in extend.items()]
    forgetting_gap = paired_gap(ext["moduleformer"]["forgetting"], ext["dense_active"]["forgetting"])
    spec_rows = [{"experts kept": mean_sd([float(r["kept"]) for r in special]) + f" of {special[0]['total']}",
                  "A test ppl before": mean_sd([r["ppl_before"] for r in special]), "A test ppl after": mean_sd([r["ppl_after"] for r in special]),
                  "forward tok/s before (median)": statistics.median(r["tok_s_before"] for r in special),
                  "forward tok/s after (median)": statistics.median(r["tok_s_after"] for r in special)}]
    prune_gap = paired_gap([r["ppl_after"] for r in special], [r["ppl_before"] for r in special])
    text = (f"## Same tokens: ModuleFormer vs dense ({len(cfg.seeds)} seeds, mean ± sd)\n\n{_table(main_rows)}\n\n"
            f"lr sweep (validation ppl, seed {cfg.seeds[0]}): " + "; ".join(f"{v}: {runs[v]['sweep_validation_ppl']}" for v in VARIANTS) +
            f"\n\nUnigram test ppl (the floor a working model beats): {unigram:.1f}\n\n{_table(gap_rows)}\n\nPaper: {PAPER}\n\n"
            f"## Extendability (domain B = {cfg.extend_corpus}, test windows)\n\n{_table(ext_rows)}\n\n"
            f"Forgetting, ModuleFormer minus dense: {forgetting_gap['diff']:.2f} ± {forgetting_gap['half_width']:.2f} (95%): {forgetting_gap['verdict']}\n\n"
            f"## Specialisation (experts chosen on validation, ppl on test)\n\n{_table(spec_rows)}\n\n"
            f"Test ppl after minus before pruning: {prune_gap['diff']:.2f} ± {prune_gap['half_width']:.2f} (95%): {prune_gap['verdict']}\n")
    summary = {"main": main_rows, "verdicts": verdicts, "extendability": ext_rows, "forgetting_gap": forgetting_gap,
               "specialisation": spec_rows, "prune_gap": prune_gap, "unigram_test_ppl": unigram, "baseline_works": works}
    return text, summary


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    out = Path(args.out)
    start = time.perf_counter()
    runs = pretrain(cfg, args.config, args.overrides, out)
    _, tokenizer = _load(Path(runs["moduleformer"]["seeds"][cfg.seeds[0]]["dir"]))
    a, b = cfg.train_corpora, [cfg.extend_corpus]
    streams = {"A_valid": held_out_windows(tokenizer, a, "validation", cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars),
               "A_test": held_out_windows(tokenizer, a, "test", cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars),
               "B_valid": held_out_windows(tokenizer, b, "validation", cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars),
               "B_test": held_out_windows(tokenizer, b, "test", cfg.eval_tokens, cfg.seq_len, cfg.corpus_chars),
               "B_train": token_stream(tokenizer, b, "train", None, cfg.corpus_chars)}
    unigram = unigram_ppl(token_stream(tokenizer, a, "train", None, cfg.corpus_chars), streams["A_test"], len(tokenizer))
    extend = extendability(cfg, runs, streams)
    special = specialisation(cfg, runs, streams)
    plot_usage(cfg, Path(runs["moduleformer"]["seeds"][cfg.seeds[0]]["dir"]), streams, out)
    plot_curves(runs, out)
    text, summary = report(cfg, runs, extend, special, unigram)
    minutes = (time.perf_counter() - start) / 60
    text += f"\nWall time: {minutes:.1f} min\n"
    results = {**summary, "runs": runs, "extend_raw": extend, "specialisation_raw": special, "paper": PAPER, "minutes": minutes}
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(text)
    return results


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
