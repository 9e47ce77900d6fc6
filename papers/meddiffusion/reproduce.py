"""The reproduction: every method x seed, the ablations and the scarce-data curve, then a results table.

``python -m papers.meddiffusion.reproduce --config papers/meddiffusion/configs/small.yaml --out DIR``.
Each (method, seed) run lives in DIR/runs/...; finished runs are skipped on a rerun, an interrupted one resumes
from its checkpoint. Checkpoints are deleted once a run has finished, so DIR stays small; each run keeps its
per-patient predictions (predictions.csv), from which the table's bootstrap intervals are computed: the test
patients are resampled, the mean over seeds of each seed's metric is recomputed on every resample, and paired
differences use the same resamples for both methods.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import fit, load_cohort, prepare, read_predictions
from papers.meddiffusion.metrics import average_precision, bootstrap, interval, pr_auc_trapezoid
from papers.meddiffusion.reference import logistic_regression_reference
from papers.meddiffusion.variants import variant_overrides
from shared.runs import Run, entrypoint, load_config, parse_run_args, to_dict

METRICS = ("pr_auc_trapz", "pr_auc", "f1", "kappa", "f1_tuned", "kappa_tuned", "roc_auc")
PR_AUCS = {"pr_auc_trapz": pr_auc_trapezoid, "pr_auc": average_precision}
# (method, baseline) pairs whose paired bootstrap difference is reported when both rows exist
COMPARISONS = (
    [("MedDiffusion", "LSTM"), ("MedDiffusion (official first-visit attention)", "LSTM"),
     ("MedDiffusion, balanced batches", "LSTM, balanced batches"), ("MedDiffusion", "LSTM + medGAN"),
     ("attended-predictor MedDiffusion", "attended-predictor w/o diffusion"),
     ("w/o step-wise attention", "MedDiffusion"), ("fixed attention 0.5/0.5", "MedDiffusion"),
     ("w/o synthetic CE", "MedDiffusion")]
    + [(f"{b}{s}", b) for b in ("LSTM", "GRU", "Transformer", "RETAIN", "Dipole") for s in (" + diffusion", " + medGAN")]
)
# The paper's tables could not be read here; the one cell we have is the official code's best Kidney result
# (claims data, lambda_D 0.1, lambda_S 0.5), quoted by the issue. It is for a different data set than ours.
PAPER_KIDNEY = {"pr_auc": 0.7834, "f1": 0.7112, "kappa": 0.6109}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def run_one(cfg: Config, prepared: Any, run_dir: Path) -> dict[str, Any]:
    """Train (or resume, or reuse) one run; drop its checkpoints once it has finished."""
    done = run_dir / "metrics.json"
    if done.exists() and json.loads(done.read_text()).get("finished"):
        return {**json.loads(done.read_text()), "reused": True}
    metrics = fit(cfg, prepared, run_dir, tensorboard=False)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    (run_dir / "best_model.pt").unlink(missing_ok=True)
    return metrics


def aggregate(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and population std over seeds of each test metric."""
    out: dict[str, float] = {}
    for m in METRICS:
        values = np.array([r[f"test_{m}"] for r in runs], dtype=float)
        out[f"{m}_mean"], out[f"{m}_std"] = float(np.nanmean(values)), float(np.nanstd(values))
    out["epochs_mean"] = float(np.mean([r["epochs_run"] for r in runs]))
    return out


def seed_mean_bootstrap(labels: np.ndarray, seed_probs: list[np.ndarray], fn: Any) -> np.ndarray:
    """Bootstrap distribution (over test patients) of the mean over seeds of ``fn`` on each seed's predictions."""
    return bootstrap(labels, seed_probs, lambda y, *ps: float(np.mean([fn(y, p) for p in ps])))


def _mean_difference(y: np.ndarray, *probs: np.ndarray, fn: Any, n_first: int) -> float:
    """Mean of ``fn`` over the first ``n_first`` score arrays minus its mean over the rest."""
    return float(np.mean([fn(y, p) for p in probs[:n_first]]) - np.mean([fn(y, p) for p in probs[n_first:]]))


def add_intervals(results: dict[str, dict[str, float]], test_probs: dict[str, list[np.ndarray]],
                  labels: np.ndarray) -> list[dict[str, Any]]:
    """95% bootstrap intervals of each row's seed-mean PR-AUCs (into ``results``) and the paired differences of
    COMPARISONS, with the gate: a difference is only judged when the baseline's interval lies above chance."""
    for name, probs in test_probs.items():
        for m, fn in PR_AUCS.items():
            results[name][f"{m}_ci"] = interval(seed_mean_bootstrap(labels, probs, fn))
    prevalence, rows = float(labels.mean()), []
    for method, base in COMPARISONS:
        if method not in test_probs or base not in test_probs:
            continue
        a, b = test_probs[method], test_probs[base]
        for m, fn in PR_AUCS.items():
            diff = bootstrap(labels, [*a, *b], functools.partial(_mean_difference, fn=fn, n_first=len(a)))
            lo, hi = interval(diff)
            works = results[base][f"{m}_ci"][0] > prevalence
            verdict = ("withheld: baseline not above chance" if not works else
                       "gain" if lo > 0 else "loss" if hi < 0 else "no difference (interval covers 0)")
            rows.append({"method": method, "baseline": base, "metric": m,
                         "difference": results[method][f"{m}_mean"] - results[base][f"{m}_mean"],
                         "ci": [lo, hi], "verdict": verdict})
    return rows


def fmt(stats: dict[str, float], m: str) -> str:
    text = f"{stats[f'{m}_mean']:.4f} ± {stats[f'{m}_std']:.4f}"
    if f"{m}_ci" in stats:
        lo, hi = stats[f"{m}_ci"]
        text += f" [{lo:.3f}, {hi:.3f}]"
    return text


def main_table(results: dict[str, dict[str, float]]) -> str:
    head = ("| method | PR-AUC, trapezoidal (official) [95% CI] | PR-AUC, average precision [95% CI] | F1 | "
            "Cohen's kappa | F1 (val-tuned cut) | kappa (val-tuned cut) | epochs |\n|---|---|---|---|---|---|---|---|\n")
    rows = "".join(f"| {name} | {fmt(s, 'pr_auc_trapz')} | {fmt(s, 'pr_auc')} | {fmt(s, 'f1')} | {fmt(s, 'kappa')} | "
                   f"{fmt(s, 'f1_tuned')} | {fmt(s, 'kappa_tuned')} | {s['epochs_mean']:.1f} |\n"
                   for name, s in results.items())
    paper = (f"| *paper (official code, Kidney claims data, MedDiffusion)* | {PAPER_KIDNEY['pr_auc']} | - | "
             f"{PAPER_KIDNEY['f1']} | {PAPER_KIDNEY['kappa']} | - | - | - |\n")
    return head + rows + paper


def comparison_table(rows: list[dict[str, Any]]) -> str:
    head = ("| method | baseline | PR-AUC | difference of seed means [paired 95% CI] | verdict |\n"
            "|---|---|---|---|---|\n")
    names = {"pr_auc_trapz": "trapezoidal", "pr_auc": "average precision"}
    return head + "".join(f"| {r['method']} | {r['baseline']} | {names[r['metric']]} | {r['difference']:+.4f} "
                          f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] | {r['verdict']} |\n" for r in rows)


def curve_table(curve: dict[str, dict[float, dict[str, float]]]) -> str:
    fractions = sorted({f for per in curve.values() for f in per})
    head = "| method | " + " | ".join(f"{f:.0%} PR-AUC (trapz)" for f in fractions) + " |\n"
    head += "|---|" + "---|" * len(fractions) + "\n"
    return head + "".join(
        f"| {name} | " + " | ".join(fmt(per[f], "pr_auc_trapz") if f in per else "-" for f in fractions) + " |\n"
        for name, per in curve.items())


def plot(results: dict[str, dict[str, float]], curve: dict[str, dict[float, dict[str, float]]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(results) + 1.5))
    names = list(results)
    means = np.array([results[n]["pr_auc_trapz_mean"] for n in names])
    ci = np.array([results[n].get("pr_auc_trapz_ci", [m, m]) for n, m in zip(names, means)])
    ax.barh(names, means, xerr=[means - ci[:, 0], ci[:, 1] - means])
    ax.set_xlabel("test PR-AUC, trapezoidal (mean over seeds, bootstrap 95% interval)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "methods_pr_auc.png", dpi=110)
    plt.close(fig)
    if curve:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, per in curve.items():
            fr = sorted(per)
            ax.errorbar([100 * f for f in fr], [per[f]["pr_auc_trapz_mean"] for f in fr],
                        yerr=[per[f]["pr_auc_trapz_std"] for f in fr], marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ticks = sorted({100 * f for per in curve.values() for f in per})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("% of training patients (log scale)")
        ax.set_ylabel("test PR-AUC (trapezoidal, mean ± std over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scarce_data_curve.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    base = load_config(Config, args.config, args.overrides)
    out = Path(args.out)
    run = Run(out, base, tensorboard=False)  # the folder belongs to this config; run_info.json for publishing
    started = time.time()
    cohort = load_cohort(base)
    prepared_by_fraction: dict[float, Any] = {}

    def prepared_for(fraction: float) -> Any:
        if fraction not in prepared_by_fraction:
            prepared_by_fraction[fraction] = prepare(dataclasses.replace(base, train_fraction=fraction), cohort)
        return prepared_by_fraction[fraction]

    def runs_for(variant: str, fraction: float) -> list[dict[str, Any]]:
        where = out / "runs" / slug(variant) / f"frac{fraction:g}"
        return [run_one(dataclasses.replace(base, **variant_overrides(variant), seed=seed, train_fraction=fraction),
                        prepared_for(fraction), where / f"seed{seed}") for seed in base.seeds]

    per_seed: dict[str, list[dict[str, Any]]] = {}
    results: dict[str, dict[str, float]] = {}
    test_probs: dict[str, list[np.ndarray]] = {}
    test_labels = prepared_for(base.train_fraction).data.labels.numpy()[prepared_for(base.train_fraction).splits.test]
    for variant in base.variants:
        per_seed[variant] = runs_for(variant, base.train_fraction)
        results[variant] = aggregate(per_seed[variant])
        where = out / "runs" / slug(variant) / f"frac{base.train_fraction:g}"
        test_probs[variant] = [read_predictions(where / f"seed{seed}" / "predictions.csv")["test"][2]
                               for seed in base.seeds]
        print(f"{variant}: PR-AUC (trapz) {fmt(results[variant], 'pr_auc_trapz')}  AP {fmt(results[variant], 'pr_auc')}",
              flush=True)
    reference = "Logistic regression on code counts (reference, not in the paper)"
    lr_metrics, lr_probs = logistic_regression_reference(prepared_for(base.train_fraction))
    per_seed[reference] = [lr_metrics]
    results[reference] = aggregate(per_seed[reference])
    test_probs[reference] = [lr_probs["test"][1]]
    comparisons = add_intervals(results, test_probs, test_labels)
    curve: dict[str, dict[float, dict[str, float]]] = {}
    for variant in base.curve_variants:
        curve[variant] = {}
        for fraction in base.curve_fractions:
            runs = runs_for(variant, fraction)
            per_seed[f"{variant} @ {fraction:g}"] = runs
            curve[variant][fraction] = aggregate(runs)
    summary = cohort.summary()
    split = prepared_for(base.train_fraction).splits
    text = (f"# MedDiffusion reproduction: {cohort.name}\n\n"
            f"Data: {summary['patients']} patients ({summary['positives']} positive, prevalence "
            f"{summary['prevalence']:.3f}), {summary['codes']} codes; patient-level split train/val/test = "
            f"{len(split.train)}/{len(split.val)}/{len(split.test)} (split seed {base.split_seed}). "
            + ("**Synthetic data** (Eunomia, Synthea-derived), not real patients.\n\n" if base.dataset == "eunomia"
               else "\n\n")
            + f"Test metrics of the epoch with the best validation F1; mean ± std (population) over seeds "
            f"{base.seeds}, and in brackets the 95% bootstrap interval of that seed mean over test patients "
            f"(1000 resamples). Two PR-AUCs: the official code's trapezoidal area under (recall, precision) and "
            f"average precision. F1 and kappa at the paper's argmax rule (p >= 0.5); the 'val-tuned' columns use "
            f"the cut that maximises validation F1.\n\n" + main_table(results)
            + "\n## Paired comparisons (same test patients resampled for both rows)\n\n"
            + f"A verdict is given only when the baseline's interval lies above chance (test prevalence "
            f"{test_labels.mean():.3f}).\n\n" + comparison_table(comparisons))
    if curve:
        text += "\n## Scarce data: test PR-AUC vs share of training patients\n\n" + curve_table(curve)
    trained = sum(not r.get("reused") for runs in per_seed.values() for r in runs)
    text += (f"\nWall time of this invocation: {time.time() - started:.0f} s ({trained} runs trained here, "
             f"finished runs from an earlier invocation reused).\n")
    (out / "results.md").write_text(text)
    payload = {"config": to_dict(base), "cohort": summary, "results": results, "comparisons": comparisons,
               "curve": {v: {str(f): s for f, s in per.items()} for v, per in curve.items()},
               "per_seed": per_seed, "paper_kidney_official_code": PAPER_KIDNEY, "wall_seconds": time.time() - started}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    plot(results, curve, out)
    print(text)
    run.finish({"results": results, "comparisons": comparisons, "wall_seconds": payload["wall_seconds"]})
    return payload


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
