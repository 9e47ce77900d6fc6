"""The whole reproduction for a config: every dataset x shot x method x seed (plus HiMPP and PAR from the
self-supervised pretrained encoder when ``pretrain_steps`` > 0), ending in a markdown table.

python -m papers.himpp.reproduce --config papers/himpp/configs/small.yaml --out papers/himpp/results/small
Finished runs are skipped and interrupted ones resume, so the command can simply be run again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from papers.himpp.common import (
    attribute_masking,
    initial_encoder,
    load_benchmark,
    plot_losses,
    train_and_test,
)
from papers.himpp.config import HiMPPConfig
from papers.himpp.featurize import GraphCache
from papers.himpp.training import CHECKPOINT
from shared.runs import Run, entrypoint, load_config, parse_run_args

PRETRAINED = ("himpp", "par")  # the methods also run from the pretrained encoder
LABELS = {"himpp": "HiMPP", "no_property": "HiMPP w/o property-level", "no_molecule": "HiMPP w/o molecule-level",
          "par": "PAR (no hypernetworks)", "protonet": "ProtoNet", "maml": "MAML (head inner loop)"}
PAPER_NOTE = ("Reported numbers, with their sources, are beside ours in papers/himpp/README.md ('The paper's table'): "
              "PAR's own Tox21 numbers and PaddleFSL's PAR / MAML numbers were found; HiMPP's / PACIA's table was not.")


def variant_name(method: str, pretrained: bool) -> str:
    return f"{method}+pretrain" if pretrained else method


def run_grid(cfg: HiMPPConfig, out: Path, on_row: Callable[[list[dict[str, Any]]], None] | None = None,
             progress: bool = True) -> list[dict[str, Any]]:
    """Train and test every cell of the grid (skipping finished ones); returns the runs' metrics.
    ``on_row`` sees the rows so far after each run (reproduce.py rewrites its partial results)."""
    rows = []
    benches, base_inits, inits, pre_curves = {}, {}, {}, {}
    for dataset in cfg.datasets:  # featurise once; pretrain once per data set (shared by every shot and method)
        cache = GraphCache()
        benches[dataset] = (load_benchmark(dataset, cache, cfg.fsmol_max_tasks_per_split), cache)
        data_cfg = dataclasses.replace(cfg, dataset=dataset)
        base_inits[dataset], _ = initial_encoder(data_cfg, benches[dataset][0], cache, out / f"init_{dataset}", progress)
        inits[dataset], pre_curves[dataset] = attribute_masking(data_cfg, cfg.grid_pretrain_steps, benches[dataset][0],
                                                                cache, out / f"pretrain_{dataset}", progress)
        if pre_curves[dataset]:
            plot_losses({f"attribute masking ({dataset})": pre_curves[dataset]}, out / f"pretrain_{dataset}_loss.png")
    for k in cfg.shots:
        for dataset in cfg.datasets:
            bench, cache = benches[dataset]
            init = inits[dataset]
            for seed in cfg.seeds:
                for method in cfg.methods:
                    for pre in (False, True):
                        if pre and (init is None or method not in PRETRAINED):
                            continue
                        run_cfg = dataclasses.replace(cfg, dataset=dataset, k_shot=k, method=method, seed=seed)
                        if pre:  # the +pretrain rows' configs say what their encoder started from
                            run_cfg = dataclasses.replace(run_cfg, pretrained_gin=None,
                                                          pretrain_steps=cfg.grid_pretrain_steps)
                        run_dir = out / "runs" / f"{dataset}_{k}shot_{variant_name(method, pre)}_s{seed}"
                        done = run_dir / "metrics.json"
                        if done.exists():
                            metrics = json.loads(done.read_text())
                        else:
                            metrics = train_and_test(run_cfg, run_dir, cache, bench,
                                                     init if pre else base_inits[dataset], progress)
                            (run_dir / CHECKPOINT).unlink(missing_ok=True)  # keep committed results small
                        metrics["losses_file"] = str(run_dir / "metrics.jsonl")
                        rows.append({**metrics, "variant": variant_name(method, pre), "seed": seed})
                        if on_row is not None:
                            on_row(rows)
    for dataset in cfg.datasets:
        shutil.rmtree(out / f"pretrain_{dataset}", ignore_errors=True)
        shutil.rmtree(out / f"init_{dataset}", ignore_errors=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """variant -> 'dataset k-shot' -> final-step test ROC-AUC (mean and standard error: over seeds when there are
    several, else over the support draws), the best-over-checkpoints ROC-AUC (as PAR / PACIA report; NaN when the
    run had no eval_every), and training convergence (last-10-step loss against the constant-prior loss)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["variant"], f"{r['dataset']} {r['k_shot']}-shot"), []).append(r)
    for (variant, column), runs in cells.items():
        aucs = np.array([r["roc_auc"] for r in runs])
        sem = float(aucs.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else float(runs[0]["roc_auc_sem"])
        best = [r.get("roc_auc_best_checkpoint", float("nan")) for r in runs]
        table.setdefault(variant, {})[column] = {
            "mean": float(aucs.mean()), "sem": sem, "n_seeds": len(runs),
            "sem_over": "seeds" if len(runs) > 1 else "support draws",
            "best_checkpoint": float(np.mean(best)),
            "train_loss_last": float(np.mean([r["train_loss_last"] for r in runs])),
            "prior_loss": float(np.mean([r["prior_loss"] for r in runs]))}
    return table


def markdown(table: dict[str, dict[str, dict[str, float]]], columns: list[str]) -> str:
    """One row per method: final-step mean ± SE | best over checkpoints | train loss (last 10 steps) / prior loss."""
    header = "| method | " + " | ".join(f"{c} final ± SE | {c} best ckpt* | {c} loss / prior" for c in columns) + " |"
    lines = [header, "|---" * (3 * len(columns) + 1) + "|"]
    for variant, cells in table.items():
        method, _, pre = variant.partition("+")
        name = LABELS[method] + (" + attribute-masking pretraining" if pre else "")
        vals = []
        for c in columns:
            if c not in cells:
                vals += ["-", "-", "-"]
                continue
            cell = cells[c]
            best = "-" if np.isnan(cell["best_checkpoint"]) else f"{100 * cell['best_checkpoint']:.2f}"
            vals += [f"{100 * cell['mean']:.2f} ± {100 * cell['sem']:.2f}", best,
                     f"{cell['train_loss_last']:.3f} / {cell['prior_loss']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def compare(table: dict[str, dict[str, dict[str, float]]], columns: list[str], method: str = "himpp") -> list[dict]:
    """``method`` against every other variant per column: the difference of mean final ROC-AUCs with its combined
    SE, and a verdict. A side that is not above chance (mean - 2 SE <= 0.5) is no working model, so the verdict is
    withheld; a difference inside 2 combined SEs is reported as no gap."""
    rows = []
    for column in columns:
        ours = table.get(method, {}).get(column)
        if ours is None:
            continue
        for variant, cells in table.items():
            if variant == method or column not in cells:
                continue
            other = cells[column]
            diff = ours["mean"] - other["mean"]
            se = float(np.hypot(ours["sem"], other["sem"]))
            at_chance = [v for v, c in ((method, ours), (variant, other)) if c["mean"] - 2 * c["sem"] <= 0.5]
            if at_chance:
                verdict = f"withheld: {' and '.join(at_chance)} not above chance (ROC-AUC - 2 SE <= 50)"
            elif abs(diff) <= 2 * se:
                verdict = "no gap (inside 2 combined SE)"
            else:
                verdict = f"{method} {'ahead' if diff > 0 else 'behind'}"
            rows.append({"column": column, "method": method, "baseline": variant, "difference": diff,
                         "se": se, "verdict": verdict})
    return rows


def comparison_markdown(rows: list[dict]) -> str:
    lines = ["| column | HiMPP vs | difference ± combined SE | verdict |", "|---|---|---|---|"]
    for r in rows:
        method, _, pre = r["baseline"].partition("+")
        name = LABELS[method] + (" + attribute-masking pretraining" if pre else "")
        lines.append(f"| {r['column']} | {name} | {100 * r['difference']:+.2f} ± {100 * r['se']:.2f} | {r['verdict']} |")
    return "\n".join(lines)


def plot_bars(table: dict[str, dict[str, dict[str, float]]], columns: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(columns)), 4))
    width = 0.8 / max(len(table), 1)
    for i, (variant, cells) in enumerate(table.items()):
        xs = [j + i * width for j, c in enumerate(columns) if c in cells]
        ax.bar(xs, [100 * cells[c]["mean"] for c in columns if c in cells], width,
               yerr=[100 * cells[c]["sem"] for c in columns if c in cells], label=variant)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))], columns)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("test ROC-AUC (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(HiMPPConfig, args.config, args.overrides)
    out = Path(args.out)
    run = Run(out, cfg, tensorboard=False)
    columns = [f"{d} {k}-shot" for d in cfg.datasets for k in cfg.shots]
    rows = run_grid(cfg, out, lambda rows: write_results(cfg, args.config, out, rows, columns, final=False))
    report, table = write_results(cfg, args.config, out, rows, columns, final=True)
    print(report)
    return run.finish({"table": table})


def write_results(cfg: HiMPPConfig, config_path: str, out: Path, rows: list[dict[str, Any]], columns: list[str],
                  final: bool) -> tuple[str, dict[str, Any]]:
    """results.md, results.json and the plots for the rows so far (marked partial until the grid is done)."""
    table = summarise(rows)
    comparisons = compare(table, columns)
    text = markdown(table, columns)
    if comparisons:
        text += "\n\nHiMPP against each other row (final step):\n\n" + comparison_markdown(comparisons)
    plot_bars(table, columns, out / "roc_auc.png")
    plot_losses({f"{r['variant']} {r['dataset']} {r['k_shot']}-shot": [
        row["train_loss"] for row in map(json.loads, Path(r["losses_file"]).read_text().splitlines())
        if "train_loss" in row] for r in rows if r["variant"] == "himpp"}, out / "himpp_loss.png")
    status = "" if final else " (PARTIAL: the grid is still running or was interrupted)"
    report = (f"# HiMPP reproduction ({config_path}){status}\n\nTest ROC-AUC (%) averaged over the test tasks. "
              f"**final ± SE**: the model after the last step, {cfg.test_repeats} support draws per test task, "
              f"{cfg.test_max_queries or 'every remaining molecule as a'} quer{'ies' if cfg.test_max_queries else 'y'}"
              f" per test episode{' (every remaining positive kept)' if cfg.test_keep_positives else ''}; standard "
              f"error over seeds ({len(cfg.seeds)}) when more than one, else over the support draws. "
              f"**best ckpt\\***: best over checkpoints (as PAR/PACIA report): the highest test ROC-AUC among "
              f"evaluations every {cfg.eval_every or '-'} steps (one support draw each, every query), i.e. model "
              f"selection on the test tasks, only for comparison with the papers' numbers. **loss / prior**: "
              f"training loss over the last 10 steps vs. the loss of always predicting the training queries' "
              f"positive rate (a model that learnt nothing beyond the prior).\n\n{text}\n\n{PAPER_NOTE}\n")
    (out / "results.md").write_text(report)
    results = {"table": table, "comparisons": comparisons, "runs": [{k: v for k, v in r.items() if k != "losses_file"} for r in rows]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return report, table


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
