"""The OWL reproduction: ``python -m papers.owl.reproduce --config FILE --out DIR [key=value ...]``.

Runs, from one dense model and one calibration set: the 70% table (dense, magnitude, Wanda, OWL+Wanda, SparseGPT,
OWL+SparseGPT), a sparsity sweep, and a grid of OWL's outlier threshold M by lambda; writes results.md, results.json
and plots (sweep.png, grid.png, owl_layers.png).
Every finished run is checkpointed, so an interrupted reproduction picks up where it stopped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from papers.owl.config import Config
from papers.owl.models import load_model, model_device
from papers.owl.pipeline import (
    calibration_sequences,
    evaluation_tokens,
    perplexities,
    plot_layer_report,
    prune,
    split_method,
    write_json,
)
from papers.owl.sequential import dense_input_norms
from shared.accel import seed_everything, set_torch_threads
from shared.runs import Run, load_checkpoint, load_config, parse_run_args, save_checkpoint

# OWL README, LLaMA-7B, WikiText-2 perplexity at 70% unstructured sparsity.
PAPER_LLAMA7B_70 = {"dense": 5.68, "magnitude": 48419.12, "wanda": 85.77, "owl_wanda": 24.55,
                    "sparsegpt": 26.30, "owl_sparsegpt": 19.49}


def job_key(method: str, sparsity: float, m: float | None = None, lam: float | None = None) -> str:
    key = f"{method}@{sparsity:g}"
    return key if m is None else f"{key}|M={m:g}|lambda={lam:g}"


def plan_jobs(cfg: Config) -> list[dict[str, Any]]:
    """Table, sweep and grid runs, without duplicates (a run shared by two of them is done once)."""
    jobs: dict[str, dict[str, Any]] = {}

    def add(method: str, sparsity: float, m: float | None = None, lam: float | None = None) -> None:
        if split_method(method)[1] and m is None:
            m, lam = cfg.owl_m, cfg.owl_lambda
        jobs.setdefault(job_key(method, sparsity, m, lam), dict(method=method, sparsity=sparsity, m=m, lam=lam))

    add("dense", 0.0)
    for method in cfg.table_methods:
        add(method, cfg.sparsity)
    for method in cfg.sweep_methods:
        for s in sorted({*cfg.sweep_sparsities, cfg.sparsity}):
            add(method, s)
    for m in cfg.grid_m:  # the full M x lambda grid at the target sparsity
        for lam in cfg.grid_lambda:
            add(f"owl_{cfg.grid_method}", cfg.sparsity, m, lam)
    return [{"key": k, **v} for k, v in jobs.items()]


def _mean_ppl(row: dict[str, Any]) -> float:
    values = [v for k, v in row.items() if k.startswith("ppl_")]
    return math.exp(sum(math.log(v) for v in values) / len(values))


def results_table(cfg: Config, rows: dict[str, dict[str, Any]]) -> str:
    """Markdown: our perplexities at the target sparsity beside the paper's LLaMA-7B WikiText-2 numbers."""
    corpora = [f"ppl_{c}" for c in cfg.eval_corpora]
    head = "| method | " + " | ".join(f"{c.removeprefix('ppl_')} ppl" for c in corpora)
    head += " | achieved sparsity | paper (LLaMA-7B, WikiText-2) |\n"
    lines = [head, "|---" * (len(corpora) + 3) + "|\n"]
    for method in ["dense", *cfg.table_methods]:
        key = job_key(method, 0.0 if method == "dense" else cfg.sparsity,
                      *((cfg.owl_m, cfg.owl_lambda) if split_method(method)[1] else ()))
        row = rows[key]
        paper = PAPER_LLAMA7B_70.get(method) if cfg.sparsity == 0.7 and cfg.sparsity_type == "unstructured" else None
        cells = " | ".join(f"{row[c]:.2f}" for c in corpora)
        lines.append(f"| {method} | {cells} | {row['overall_sparsity']:.4f} | {paper if paper else 'n/a'} |\n")
    return "".join(lines)


def sweep_table(cfg: Config, rows: dict[str, dict[str, Any]]) -> str:
    """Perplexity of each swept method by sparsity: the geometric mean over the corpora, then each corpus."""
    sparsities = sorted({*cfg.sweep_sparsities, cfg.sparsity})
    lines = ["| method | ppl | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |\n",
             "|---" * (len(sparsities) + 2) + "|\n"]
    for metric in ("geo-mean", *cfg.eval_corpora):
        for method in cfg.sweep_methods:
            values = [rows[_key(cfg, method, s)] for s in sparsities]
            cells = [_mean_ppl(r) if metric == "geo-mean" else r[f"ppl_{metric}"] for r in values]
            lines.append(f"| {method} | {metric} | " + " | ".join(f"{v:.2f}" for v in cells) + " |\n")
    return "".join(lines)


def grid_values(cfg: Config, rows: dict[str, dict[str, Any]]) -> list[list[float]]:
    """Geometric-mean perplexity of OWL at the target sparsity, one row per M, one column per lambda."""
    method = f"owl_{cfg.grid_method}"
    return [[_mean_ppl(rows[job_key(method, cfg.sparsity, m, lam)]) for lam in cfg.grid_lambda] for m in cfg.grid_m]


def grid_table(cfg: Config, rows: dict[str, dict[str, Any]]) -> str:
    """The M x lambda grid as markdown, with uniform ratios (lambda = 0) for reference."""
    if not cfg.grid_m or not cfg.grid_lambda:
        return "Not run in this config (grid_m or grid_lambda is empty).\n"
    lines = ["| M \\ lambda | " + " | ".join(f"{lam:g}" for lam in cfg.grid_lambda) + " |\n",
             "|---" * (len(cfg.grid_lambda) + 1) + "|\n"]
    for m, values in zip(cfg.grid_m, grid_values(cfg, rows), strict=True):
        lines.append(f"| {m:g} | " + " | ".join(f"{v:.2f}" for v in values) + " |\n")
    uniform = rows.get(job_key(cfg.grid_method, cfg.sparsity))
    if uniform is not None:
        lines.append(f"\nUniform {cfg.grid_method} (lambda = 0) at the same sparsity: {_mean_ppl(uniform):.2f}\n")
    return "".join(lines)


def plot_grid(cfg: Config, rows: dict[str, dict[str, Any]], path: Path) -> None:
    """Heat map of the M x lambda grid: log10 of the geometric-mean perplexity, values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array(grid_values(cfg, rows))
    fig, ax = plt.subplots(figsize=(1.1 * len(cfg.grid_lambda) + 2.5, 0.6 * len(cfg.grid_m) + 2))
    image = ax.imshow(np.log10(values), cmap="viridis_r", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="white" if v > np.median(values) else "black")
    ax.set_xticks(range(len(cfg.grid_lambda)), [f"{lam:g}" for lam in cfg.grid_lambda])
    ax.set_yticks(range(len(cfg.grid_m)), [f"{m:g}" for m in cfg.grid_m])
    ax.set_xlabel("lambda")
    ax.set_ylabel("M")
    fig.colorbar(image, ax=ax, label="log10 perplexity (geo-mean)")
    uniform = rows.get(job_key(cfg.grid_method, cfg.sparsity))
    title = f"OWL+{cfg.grid_method}, {cfg.sparsity:.0%}"
    ax.set_title(title + (f"; uniform {_mean_ppl(uniform):.0f}" if uniform is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _key(cfg: Config, method: str, sparsity: float) -> str:
    owl = split_method(method)[1]
    return job_key(method, sparsity, *((cfg.owl_m, cfg.owl_lambda) if owl else ()))


def plot_sweep(cfg: Config, rows: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sparsities = sorted({*cfg.sweep_sparsities, cfg.sparsity})
    fig, axes = plt.subplots(1, len(cfg.eval_corpora), figsize=(5 * len(cfg.eval_corpora), 3.6), squeeze=False)
    dense = rows[job_key("dense", 0.0)]
    for ax, corpus in zip(axes[0], cfg.eval_corpora, strict=True):
        for method in cfg.sweep_methods:
            ax.plot([s * 100 for s in sparsities], [rows[_key(cfg, method, s)][f"ppl_{corpus}"] for s in sparsities],
                    "o-", label=method)
        ax.axhline(dense[f"ppl_{corpus}"], color="gray", ls=":", label="dense")
        ax.set_yscale("log")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(f"perplexity ({corpus}, test)")
        ax.legend()
    fig.suptitle(f"{cfg.model}: uniform vs OWL ratios")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype)
    dense_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # off the GPU
    sequences = calibration_sequences(cfg, tokenizer)
    tokens = evaluation_tokens(cfg, tokenizer)
    progress_path = run.dir / "progress.pkl"
    state = load_checkpoint(progress_path) if progress_path.exists() else {"rows": {}, "norms": None, "reports": {}}
    jobs = plan_jobs(cfg)
    if state["norms"] is None and any(split_method(j["method"])[1] for j in jobs):
        state["norms"] = dense_input_norms(model, sequences, cfg.progress)  # OWL pass 1, shared by every OWL run
    started = time.perf_counter()
    for step, job in enumerate(tqdm(jobs, desc="reproduce", disable=not cfg.progress)):
        if job["key"] in state["rows"]:
            continue
        model.load_state_dict(dense_state)
        t0 = time.perf_counter()
        report = prune(model, cfg, job["method"], job["sparsity"], sequences, state["norms"], job["m"], job["lam"])
        prune_s = time.perf_counter() - t0
        row = {**perplexities(model, tokens, cfg.eval_window, cfg.progress), "overall_sparsity": report["overall_sparsity"],
               "prune_seconds": prune_s, **{k: job[k] for k in ("method", "sparsity", "m", "lam")}}
        state["rows"][job["key"]] = row
        state["reports"][job["key"]] = report
        save_checkpoint(progress_path, state)
        run.log(step, **{k: v for k, v in row.items() if isinstance(v, float)})
    model.load_state_dict(dense_state)
    rows = state["rows"]
    table, sweep, grid = results_table(cfg, rows), sweep_table(cfg, rows), grid_table(cfg, rows)
    eval_sizes = ", ".join(f"{k} {v.numel()} tokens" for k, v in tokens.items())
    md = (f"# OWL reproduction: {cfg.model}, {cfg.sparsity:.0%} {cfg.sparsity_type}\n\n"
          f"Calibration: {cfg.n_calib} x {cfg.calib_len} tokens of {cfg.calib_corpus} (train documents). "
          f"Perplexity: held-out test documents ({eval_sizes}), non-overlapping {cfg.eval_window}-token windows. "
          f"OWL: M={cfg.owl_m:g}, lambda={cfg.owl_lambda:g}.\n\n{table}\n"
          f"## Sparsity sweep (perplexity: geometric mean over {', '.join(cfg.eval_corpora)}, then each)\n\n{sweep}\n"
          f"## OWL sensitivity: M x lambda ({cfg.grid_method}, {cfg.sparsity:.0%}, geometric mean ppl)\n\n{grid}")
    owl_key = _key(cfg, f"owl_{cfg.grid_method}", cfg.sparsity)
    if owl_key in state["reports"]:
        plot_layer_report(state["reports"][owl_key], run.dir / "owl_layers.png")
        write_json(run.dir / "owl_layer_report.json", state["reports"][owl_key])
    if cfg.sweep_methods:
        plot_sweep(cfg, rows, run.dir / "sweep.png")
    if cfg.grid_m and cfg.grid_lambda:
        plot_grid(cfg, rows, run.dir / "grid.png")
    (run.dir / "results.md").write_text(md)
    results = {"rows": rows, "paper_llama7b_70": PAPER_LLAMA7B_70, "calibration_tokens": int(sequences.numel()),
               "eval_tokens": {k: int(v.numel()) for k, v in tokens.items()}, "device": str(model_device(model)),
               "seconds_this_call": time.perf_counter() - started}
    write_json(run.dir / "results.json", results)
    print(md)
    run.finish({k: v for k, v in rows[owl_key].items() if k.startswith("ppl_")} if owl_key in rows else {})
    return results


if __name__ == "__main__":
    main()
