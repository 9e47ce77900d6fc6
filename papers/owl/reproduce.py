"""The OWL reproduction: ``python -m papers.owl.reproduce --config FILE --out DIR [key=value ...]``.

At the config's sparsity (70%), with held-out documents split into validation and test:
1. M and lambda of OWL+``grid_method`` are chosen on the validation documents (calibration seed ``seed``);
2. the dense model and every ``table_methods`` entry (OWL at the chosen M, lambda) are evaluated on the test
   documents for every calibration seed in ``seeds``: the seed spread is the noise band;
3. at seed ``seed``, on validation: the other tie-break order (``topk``), and the calibration-size curve.
The verdict counts OWL's gain only if it holds for every seed and exceeds the tie-break effect, and only if the
uniform baseline works (``baseline_max_ppl``). Writes results.md, results.json, grid.png, curve.png,
owl_layers.png and owl_layer_report.json. Every finished run is checkpointed (an interrupted call resumes).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from papers.owl.config import Config
from papers.owl.models import load_model
from papers.owl.offload import execution_device
from papers.owl.pipeline import (
    calibration_sequences,
    evaluation_tokens,
    memory_report,
    perplexities,
    plot_layer_report,
    prune,
    split_method,
    write_json,
)
from papers.owl.sequential import dense_input_norms
from shared.accel import seed_everything, set_torch_threads
from shared.runs import Run, entrypoint, load_checkpoint, load_config, parse_run_args, save_checkpoint

# OWL README, LLaMA-7B, WikiText-2 perplexity at 70% unstructured sparsity.
PAPER_LLAMA7B_70 = {"dense": 5.68, "magnitude": 48419.12, "wanda": 85.77, "owl_wanda": 24.55,
                    "sparsegpt": 26.30, "owl_sparsegpt": 19.49}
OTHER_TIE_BREAK = {"stable": "topk", "topk": "stable"}
SPLIT_PREFIX = {"validation": "val", "test": "test"}


def geo_mean(row: dict[str, Any], split: str) -> float:
    """Geometric mean of a row's perplexities over the corpora of one split."""
    values = [v for k, v in row.items() if k.startswith(f"ppl_{SPLIT_PREFIX[split]}_")]
    return math.exp(sum(math.log(v) for v in values) / len(values))


class Jobs:
    """Prunes and evaluates (method, seed, calibration size, M, lambda, tie-break) once each, checkpointing rows."""

    def __init__(self, cfg: Config, run: Run, model: torch.nn.Module, tokenizer: object | None) -> None:
        self.cfg, self.run, self.model, self.tokenizer = cfg, run, model, tokenizer
        self.dense_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # off the GPU
        self.tokens = {s: evaluation_tokens(cfg, tokenizer, s) for s in ("validation", "test")}
        self.path = run.dir / "progress.pkl"
        self.state = load_checkpoint(self.path) if self.path.exists() else {"rows": {}, "reports": {}, "norms": {}}
        self._sequences: dict[tuple[int, int], torch.Tensor] = {}

    def sequences(self, seed: int, n_calib: int) -> torch.Tensor:
        if (seed, n_calib) not in self._sequences:
            self._sequences[seed, n_calib] = calibration_sequences(self.cfg, self.tokenizer, seed, n_calib)
        return self._sequences[seed, n_calib]

    def norms(self, seed: int, n_calib: int) -> tuple[list[dict[str, torch.Tensor]], float]:
        """OWL pass 1 on the dense model for one calibration set, shared by every OWL run on it, and its time."""
        key = f"seed={seed}|n={n_calib}"
        if key not in self.state["norms"]:
            self.model.load_state_dict(self.dense_state)
            t0 = time.perf_counter()
            norms = dense_input_norms(self.model, self.sequences(seed, n_calib), self.cfg.progress)
            self.state["norms"][key] = (norms, time.perf_counter() - t0)
        return self.state["norms"][key]

    def get(self, method: str, seed: int, n_calib: int, splits: tuple[str, ...], m: float | None = None,
            lam: float | None = None, tie_break: str | None = None) -> dict[str, Any]:
        cfg = self.cfg
        owl = split_method(method)[1]
        tie_break = tie_break or cfg.tie_break
        sparsity = 0.0 if method == "dense" else cfg.sparsity
        key = f"{method}@{sparsity:g}|seed={seed}|n={n_calib}|tie={tie_break}"
        if owl:
            key += f"|M={m:g}|lambda={lam:g}"
        row = self.state["rows"].get(key, {})
        missing = [s for s in splits if not any(k.startswith(f"ppl_{SPLIT_PREFIX[s]}_") for k in row)]
        if not missing:
            return row
        self.model.load_state_dict(self.dense_state)
        norms, norm_s = self.norms(seed, n_calib) if owl else (None, 0.0)
        report = prune(self.model, cfg, method, sparsity, self.sequences(seed, n_calib), norms, m, lam,
                       tie_break=tie_break)
        row = {**row, "method": method, "sparsity": sparsity, "seed": seed, "n_calib": n_calib, "m": m, "lam": lam,
               "tie_break": tie_break, "overall_sparsity": report["overall_sparsity"],
               "model_sparsity": report["model_sparsity"], "outlier_pass_seconds": norm_s,
               "prune_seconds": report["prune_seconds"] + norm_s}  # a lone OWL run pays for its outlier pass
        for split in missing:
            row.update(perplexities(self.model, self.tokens[split], cfg.eval_window, cfg.progress,
                                    prefix=f"ppl_{SPLIT_PREFIX[split]}_"))
        row.update(memory_report(execution_device(self.model)))
        self.state["rows"][key] = row
        self.state["reports"][key] = report
        self.state["evaluations"] = self.state.get("evaluations", 0) + 1  # a row gaining its test split counts again
        save_checkpoint(self.path, self.state)
        self.run.log(self.state["evaluations"], **{k: v for k, v in row.items() if isinstance(v, float)})
        return row


def compare(cfg: Config, uniform: list[dict[str, Any]], owl: list[dict[str, Any]], tie_effect: float,
            dense: dict[str, Any]) -> dict[str, Any]:
    """OWL vs uniform over calibration seeds on test: per-seed ratios, their band and the verdict (with gates)."""
    ratios = [geo_mean(o, "test") / geo_mean(u, "test") for u, o in zip(uniform, owl, strict=True)]
    mean_ratio = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    base = math.exp(sum(math.log(geo_mean(u, "test")) for u in uniform) / len(uniform))
    out = {"ratios": ratios, "mean_ratio": mean_ratio, "band": [min(ratios), max(ratios)], "tie_effect": tie_effect,
           "uniform_geo_ppl": base, "dense_geo_ppl": geo_mean(dense, "test")}
    if not math.isfinite(base) or base >= cfg.baseline_max_ppl:
        out["verdict"] = f"withheld: the uniform baseline does not work (geo-mean ppl {base:.1f} >= {cfg.baseline_max_ppl:g})"
    elif max(ratios) < 1 and abs(math.log(mean_ratio)) > tie_effect:
        out["verdict"] = f"OWL better: {1 - mean_ratio:.1%} lower ppl, every seed, beyond the tie-break effect"
    elif min(ratios) > 1 and abs(math.log(mean_ratio)) > tie_effect:
        out["verdict"] = f"OWL worse: {mean_ratio - 1:.1%} higher ppl, every seed, beyond the tie-break effect"
    else:
        out["verdict"] = "no gap: the difference is inside the noise (seeds disagree or it is below the tie-break effect)"
    return out


def _cells(row: dict[str, Any], split: str, corpora: list[str]) -> str:
    return " | ".join(f"{row[f'ppl_{SPLIT_PREFIX[split]}_{c}']:.2f}" for c in corpora)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg, overwrite=args.overwrite)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype, cfg.offload)
    jobs = Jobs(cfg, run, model, tokenizer)
    started = time.perf_counter()
    s0, n0, both, val = cfg.seed, cfg.n_calib, ("validation", "test"), ("validation",)
    grid_owl = f"owl_{cfg.grid_method}"

    dense = jobs.get("dense", s0, n0, both)
    # 1. M and lambda on validation only
    grid = {(m, lam): jobs.get(grid_owl, s0, n0, val, m, lam) for m in cfg.grid_m for lam in cfg.grid_lambda}
    chosen = min(grid, key=lambda k: geo_mean(grid[k], "validation")) if grid else (cfg.owl_m, cfg.owl_lambda)
    m, lam = chosen

    def owl_args(method: str) -> tuple[float | None, float | None]:
        return (m, lam) if split_method(method)[1] else (None, None)

    # 2. test, every calibration seed (seed s0's rows also carry validation, used by steps 1 and 3)
    table = {meth: [jobs.get(meth, s, n0, both if s == s0 else ("test",), *owl_args(meth)) for s in cfg.seeds]
             for meth in cfg.table_methods}
    # 3. tie-break order and calibration size, seed s0, validation
    other = OTHER_TIE_BREAK[cfg.tie_break]
    ties = {meth: jobs.get(meth, s0, n0, val, *owl_args(meth), tie_break=other) for meth in cfg.table_methods
            } if cfg.tie_break_check else {}
    at_s0 = {meth: next(r for r in rows if r["seed"] == s0) for meth, rows in table.items()}
    tie_effects = {meth: abs(math.log(geo_mean(ties[meth], "validation") / geo_mean(at_s0[meth], "validation")))
                   for meth in ties}
    tie_effect = max(tie_effects.values(), default=0.0)
    curve = {n: {meth: jobs.get(meth, s0, n, val, *owl_args(meth)) for meth in cfg.table_methods}
             for n in sorted({*cfg.curve_n_calib, n0})}

    comparisons = {}
    for meth in cfg.table_methods:
        pruner, owl = split_method(meth)
        if owl and pruner in cfg.table_methods:
            comparisons[meth] = compare(cfg, table[pruner], table[meth], tie_effect, dense)

    md = _markdown(cfg, dense, grid, chosen, table, at_s0, ties, tie_effects, curve, comparisons, jobs)
    (run.dir / "results.md").write_text(md)
    owl_key = next((k for k, r in jobs.state["rows"].items() if r.get("method") == grid_owl and r["seed"] == s0
                    and r["n_calib"] == n0 and (r["m"], r["lam"]) == chosen and r["tie_break"] == cfg.tie_break
                    and any(c.startswith("ppl_test_") for c in r)), None)
    if owl_key is not None:
        plot_layer_report(jobs.state["reports"][owl_key], run.dir / "owl_layers.png")
        write_json(run.dir / "owl_layer_report.json", jobs.state["reports"][owl_key])
    if grid:
        _plot_grid(cfg, grid, jobs.get(cfg.grid_method, s0, n0, val), run.dir / "grid.png")
    _plot_curve(cfg, curve, run.dir / "curve.png")
    results = {"rows": jobs.state["rows"], "chosen": {"owl_m": m, "owl_lambda": lam}, "comparisons": comparisons,
               "tie_effects": tie_effects, "paper_llama7b_70": PAPER_LLAMA7B_70,
               "calibration_tokens": n0 * cfg.calib_len,
               "eval_tokens": {s: {k: int(v.numel()) for k, v in t.items()} for s, t in jobs.tokens.items()},
               "device": str(execution_device(model)), "seconds_this_call": time.perf_counter() - started,
               **memory_report(execution_device(model))}
    write_json(run.dir / "results.json", results)
    print(md)
    run.finish({f"{k}_mean_ratio": v["mean_ratio"] for k, v in comparisons.items()})
    return results


def _markdown(cfg: Config, dense: dict, grid: dict, chosen: tuple, table: dict, at_s0: dict, ties: dict,
              tie_effects: dict, curve: dict, comparisons: dict, jobs: Jobs) -> str:
    corpora = cfg.eval_corpora
    sizes = {s: ", ".join(f"{k} {v.numel()}" for k, v in t.items()) for s, t in jobs.tokens.items()}
    lines = [f"# OWL reproduction: {cfg.model}, {cfg.sparsity:.0%} {cfg.sparsity_type}\n\n",
             f"Calibration: {cfg.n_calib} x {cfg.calib_len} tokens of {cfg.calib_corpus} (train documents), seeds "
             f"{cfg.seeds}; tie-break {cfg.tie_break}. Perplexity in non-overlapping {cfg.eval_window}-token windows "
             f"on validation documents ({sizes['validation']} tokens) and test documents ({sizes['test']} tokens).\n\n",
             f"## 1. OWL's M and lambda, chosen on validation (OWL+{cfg.grid_method}, seed {cfg.seed})\n\n"]
    if grid:
        lams = list(cfg.grid_lambda)
        lines += ["| M \\ lambda | " + " | ".join(f"{x:g}" for x in lams) + " |\n", "|---" * (len(lams) + 1) + "|\n"]
        for m in cfg.grid_m:
            lines.append(f"| {m:g} | " + " | ".join(f"{geo_mean(grid[m, x], 'validation'):.2f}" for x in lams) + " |\n")
        uniform = jobs.get(cfg.grid_method, cfg.seed, cfg.n_calib, ("validation",))
        lines.append(f"\nUniform {cfg.grid_method}: {geo_mean(uniform, 'validation'):.2f}. "
                     f"Chosen: M = {chosen[0]:g}, lambda = {chosen[1]:g}.\n\n")
    else:
        lines.append(f"No grid; M = {chosen[0]:g}, lambda = {chosen[1]:g} from the config.\n\n")
    lines += [f"## 2. Test perplexity, every calibration seed (OWL at M = {chosen[0]:g}, lambda = {chosen[1]:g})\n\n",
              "| method | seed | " + " | ".join(f"{c} ppl" for c in corpora) + " | geo-mean | decoder-linear sparsity "
              "| whole-model sparsity | prune s | paper (LLaMA-7B, WikiText-2) |\n",
              "|---" * (len(corpora) + 7) + "|\n",
              f"| dense | - | {_cells(dense, 'test', corpora)} | {geo_mean(dense, 'test'):.2f} | "
              f"{dense['overall_sparsity']:.4f} | {dense['model_sparsity']:.4f} | 0 | {PAPER_LLAMA7B_70['dense']} |\n"]
    paper_ok = cfg.sparsity == 0.7 and cfg.sparsity_type == "unstructured"
    for meth, rows in table.items():
        for row in rows:
            paper = PAPER_LLAMA7B_70.get(meth) if paper_ok else None
            lines.append(f"| {meth} | {row['seed']} | {_cells(row, 'test', corpora)} | {geo_mean(row, 'test'):.2f} | "
                         f"{row['overall_sparsity']:.4f} | {row['model_sparsity']:.4f} | {row['prune_seconds']:.0f} | "
                         f"{paper or 'n/a'} |\n")
    lines.append("\n## Verdict (OWL / uniform geo-mean test ppl per seed; noise: seed band and tie-break effect)\n\n")
    for meth, c in comparisons.items():
        lines.append(f"- {meth}: ratios {', '.join(f'{r:.3f}' for r in c['ratios'])} (mean {c['mean_ratio']:.3f}, "
                     f"band {c['band'][0]:.3f}-{c['band'][1]:.3f}); tie-break effect {math.exp(c['tie_effect']) - 1:.1%}"
                     f". **{c['verdict']}**\n")
    if ties:
        lines.append(f"\n## 3a. Tie-break order (seed {cfg.seed}, validation geo-mean ppl)\n\n"
                     f"| method | {cfg.tie_break} | {OTHER_TIE_BREAK[cfg.tie_break]} | change |\n|---|---|---|---|\n")
        for meth, row in ties.items():
            base = geo_mean(at_s0[meth], "validation")
            lines.append(f"| {meth} | {base:.2f} | {geo_mean(row, 'validation'):.2f} | "
                         f"{math.exp(tie_effects[meth]) - 1:.1%} |\n")
    lines.append(f"\n## 3b. Calibration size (seed {cfg.seed}, validation geo-mean ppl)\n\n"
                 "| windows | " + " | ".join(cfg.table_methods) + " |\n" + "|---" * (len(cfg.table_methods) + 1) + "|\n")
    for n, rows in curve.items():
        lines.append(f"| {n} | " + " | ".join(f"{geo_mean(rows[x], 'validation'):.2f}" for x in cfg.table_methods)
                     + " |\n")
    return "".join(lines)


def _plot_grid(cfg: Config, grid: dict, uniform: dict, path: Path) -> None:
    """Heat map of validation geo-mean perplexity over M x lambda."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array([[geo_mean(grid[m, lam], "validation") for lam in cfg.grid_lambda] for m in cfg.grid_m])
    fig, ax = plt.subplots(figsize=(1.1 * len(cfg.grid_lambda) + 2.5, 0.6 * len(cfg.grid_m) + 2))
    image = ax.imshow(np.log10(values), cmap="viridis_r", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="white" if v > np.median(values) else "black")
    ax.set_xticks(range(len(cfg.grid_lambda)), [f"{x:g}" for x in cfg.grid_lambda])
    ax.set_yticks(range(len(cfg.grid_m)), [f"{x:g}" for x in cfg.grid_m])
    ax.set_xlabel("lambda")
    ax.set_ylabel("M")
    fig.colorbar(image, ax=ax, label="log10 validation perplexity (geo-mean)")
    ax.set_title(f"OWL+{cfg.grid_method}, {cfg.sparsity:.0%}; uniform {geo_mean(uniform, 'validation'):.0f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curve(cfg: Config, curve: dict, path: Path) -> None:
    """Validation geo-mean perplexity against the number of calibration windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    sizes = sorted(curve)
    for meth in cfg.table_methods:
        ax.plot(sizes, [geo_mean(curve[n][meth], "validation") for n in sizes], "o-", label=meth)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"calibration windows of {cfg.calib_len} tokens")
    ax.set_ylabel("validation perplexity (geo-mean)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
