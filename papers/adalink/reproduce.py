"""The reproduction table: AdaLink vs LoRA vs prompt tuning vs full FT (and the untouched model), one run.

    python -m papers.adalink.reproduce --config papers/adalink/configs/small.yaml --out build/reproduce/adalink/small

For each method: the learning rate of ``lr_grid`` with the best validation accuracy at seed ``seeds[0]`` (ties: lower
validation loss), then every seed at that rate on test; cost from bench.py in the same process. Writes results.md
and results.json. A gap is reported only when its bootstrap interval (over seeds and test rows) excludes zero, and
only against a method that beats the untouched model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from papers.adalink import bench, evaluate, train
from papers.adalink.config import Config
from shared.runs import Run, entrypoint, load_config, parse_run_args

# What the paper reports (arXiv 2310.12100, abstract and Sec. 4-5); no official code or numbers were available here.
PAPER_CLAIMS = [
    ("AdaLink vs LoRA", "competitive with LoRA on text-only (GLUE) and multimodal tasks"),
    ("AdaLink vs full FT", "close to full fine-tuning, the gap shrinking with instruction-tuned and larger models"),
    ("AdaLink vs prompt tuning", "better than prompt tuning, the other non-intrusive method"),
    ("parameters", "a tiny fraction of the model (e.g. about 1M of PaLI-X's 55B)"),
]


def _runs(out: Path, method: str, seed: int, lr: float) -> Path:
    return out / method / f"lr{lr:g}_seed{seed}"


def select_lr(cfg: Config, args_config: str, out: Path, method: str, overrides: list[str]) -> tuple[float, list[dict]]:
    """Train seeds[0] at every lr of the grid, evaluate on validation only, keep the best."""
    seed = cfg.seeds[0]
    trials = []
    for lr in cfg.lr_grid[method]:
        run_dir = _runs(out, method, seed, lr)
        metrics = train.main(["--config", args_config, "--out", str(run_dir), *overrides, f"method={method}", f"lr={lr}",
                              f"seed={seed}", "eval_splits=[validation]", f"save_full_model={method == 'full_ft'}",
                              "keep_checkpoint=false"])
        trials.append({"lr": lr, "validation_accuracy": metrics["validation_accuracy"],
                       "validation_answer_loss": metrics["validation_answer_loss"]})
    best = max(trials, key=lambda t: (t["validation_accuracy"], -t["validation_answer_loss"]))
    evaluate.main(["--config", args_config, "--out", str(_runs(out, method, seed, best["lr"])), *overrides,
                   f"method={method}", "eval_splits=[test]"])
    for t in trials:  # full FT's fine-tuned copies (540 MB each for SmolLM2) are not kept
        shutil.rmtree(_runs(out, method, seed, t["lr"]) / "model", ignore_errors=True)
    return best["lr"], trials


def test_correct(out: Path, method: str, seeds: list[int], lr: float) -> np.ndarray:
    """(seeds, test rows) 0/1 correctness: seeds[0] from evaluate.py, the others from train.py."""
    rows = []
    for i, seed in enumerate(seeds):
        run_dir = _runs(out, method, seed, lr)
        name = "eval_predictions.json" if i == 0 else "predictions.json"
        rows.append(json.loads((run_dir / name).read_text())["test"])
    return np.array(rows, dtype=float)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, n: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean accuracy difference a - b and its 95% interval, resampling seeds and test rows (rows paired)."""
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for k in range(n):
        rows = rng.integers(0, a.shape[1], a.shape[1])
        sa, sb = rng.integers(0, a.shape[0], a.shape[0]), rng.integers(0, b.shape[0], b.shape[0])
        diffs[k] = a[sa][:, rows].mean() - b[sb][:, rows].mean()
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def verdict(name_a: str, name_b: str, diff: tuple[float, float, float], b_works: bool) -> str:
    if not b_works:
        return f"withheld: {name_b} does not beat the untouched model, so it is no baseline"
    mean, lo, hi = diff
    if lo <= 0 <= hi:
        return f"no gap: {name_a} - {name_b} = {100 * mean:+.1f} points, 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    side = "better" if mean > 0 else "worse"
    return f"{name_a} {side} by {100 * mean:+.1f} points, 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _mb(x: float) -> str:
    return f"{x / 2**20:.1f}"


def main(argv: list[str] | None = None) -> dict:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    out = Path(args.out)
    run = Run(out, cfg, tensorboard=False)
    overrides = list(args.overrides)
    zero = evaluate.main(["--config", args.config, "--out", str(out / "zero_shot"), *overrides, "method=zero_shot"])
    zero_correct = np.array([json.loads((out / "zero_shot" / "eval_predictions.json").read_text())["test"]], dtype=float)
    results: dict = {"zero_shot": {"test_accuracy": [zero["test_accuracy"]], "validation_accuracy": zero["validation_accuracy"]}}
    correct = {}
    for method in cfg.methods:
        lr, trials = select_lr(cfg, args.config, out, method, overrides)
        for seed in cfg.seeds[1:]:
            train.main(["--config", args.config, "--out", str(_runs(out, method, seed, lr)), *overrides,
                        f"method={method}", f"lr={lr}", f"seed={seed}", "eval_splits=[test]", "keep_checkpoint=false"])
        correct[method] = test_correct(out, method, cfg.seeds, lr)
        first = json.loads((_runs(out, method, cfg.seeds[0], lr) / "metrics.json").read_text())
        results[method] = {"lr": lr, "lr_trials": trials, "test_accuracy": correct[method].mean(axis=1).tolist(),
                           "trainable_params": first["trainable_params"], "total_params": first["total_params"],
                           "first_loss": first["first_loss"], "final_loss": first["final_loss"]}
        run.log(len(correct), **{f"{method}_test_accuracy": float(correct[method].mean())})
    cost = bench.main(["--config", args.config, "--out", str(out / "bench"), *overrides])
    comparisons = {}
    if "adalink" in correct:
        for other in [m for m in cfg.methods if m != "adalink"]:
            works = bootstrap_diff(correct[other], zero_correct, cfg.bootstrap)[1] > 0
            diff = bootstrap_diff(correct["adalink"], correct[other], cfg.bootstrap)
            comparisons[other] = {"diff": diff, "baseline_works": bool(works),
                                  "verdict": verdict("AdaLink", other, diff, works)}
        ada_vs_zero = bootstrap_diff(correct["adalink"], zero_correct, cfg.bootstrap)
        comparisons["zero_shot"] = {"diff": ada_vs_zero, "baseline_works": True,
                                    "verdict": verdict("AdaLink", "zero_shot", ada_vs_zero, True)}
    results["comparisons"] = comparisons
    results["bench"] = cost
    table = render(cfg, results, cost, comparisons)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    run.finish({m: float(np.mean(r["test_accuracy"])) for m, r in results.items() if "test_accuracy" in r})
    print(table)
    return results


def render(cfg: Config, results: dict, cost: dict, comparisons: dict) -> str:
    total = next((r["total_params"] - r["trainable_params"] for m, r in results.items()
                  if m in cfg.methods and m != "full_ft"), None)
    lines = [f"# AdaLink reproduction: {cfg.model}, task {cfg.task}",
             "",
             f"{cfg.n_train} training rows, {cfg.steps} steps x batch {cfg.batch_size}, fields cut to "
             f"{cfg.max_field_tokens} tokens; lr chosen on {cfg.n_val} validation rows (seed {cfg.seeds[0]}); test "
             f"accuracy on {cfg.n_test} test rows, mean +- std over seeds {cfg.seeds}. Cost: bench.py in the same run "
             f"({cost['_machine']['device']}, {cost['_machine']['threads']} thread(s)); memory on the CPU is the tensors "
             "training holds (weights + grads + AdamW moments + saved activations), on CUDA the allocator's peak.",
             "",
             "| method | trainable params | % of model | lr (val acc) | test acc (per seed) | train tok/s | infer tok/s "
             "| peak train memory (MiB) | saved adapter (kB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method in ("zero_shot", *cfg.methods):
        r, c = results[method], cost.get(method, {})
        accs = np.array(r["test_accuracy"])
        acc = f"{100 * accs.mean():.1f}" + (f" +- {100 * accs.std(ddof=1):.1f} ({', '.join(f'{100 * a:.1f}' for a in accs)})"
                                           if len(accs) > 1 else "")
        params = c.get("trainable_params", 0)
        pct = f"{100 * params / total:.3f}" if total else "n/a"
        lr = f"{r['lr']:g} ({100 * max(t['validation_accuracy'] for t in r['lr_trials']):.1f})" if "lr" in r else "-"
        train_speed = f"{c['train_tokens_per_s']:.0f}" if "train_tokens_per_s" in c else "-"
        memory = _mb(c["peak_memory_bytes"]) if "peak_memory_bytes" in c else "-"
        saved = f"{c['saved_bytes'] / 1000:.0f}" if "saved_bytes" in c else "-"
        lines.append(f"| {method} | {params:,} | {pct} | {lr} | {acc} | {train_speed} | "
                     f"{c.get('inference_tokens_per_s', float('nan')):.0f} | {memory} | {saved} |")
    lines += ["", "## AdaLink against each method (bootstrap over seeds and test rows, 2.5-97.5%)", ""]
    lines += [f"- vs {m}: {c['verdict']}" for m, c in comparisons.items()]
    lines += ["", "## The paper's claims beside ours", "", "| claim | paper | ours |", "|---|---|---|"]
    ours = {"AdaLink vs LoRA": comparisons.get("lora", {}).get("verdict", "not run"),
            "AdaLink vs full FT": comparisons.get("full_ft", {}).get("verdict", "not run"),
            "AdaLink vs prompt tuning": comparisons.get("prompt_tuning", {}).get("verdict", "not run"),
            "parameters": (f"{cost.get('adalink', {}).get('trainable_params', 0):,} of {total:,}" if total else "n/a")}
    lines += [f"| {k} | {v} | {ours[k]} |" for k, v in PAPER_CLAIMS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
