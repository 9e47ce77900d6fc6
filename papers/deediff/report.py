"""The results table (beside the paper's claims) and the plots of a DeeDiff sweep (eval.json); as a command, the
fine-tuning validation curves of several runs in one figure (:func:`main`)."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from shared.runs import UserError, entrypoint

PAPER_CLAIMS = (
    "| paper's claim (arXiv 2309.17074, CIFAR-10 U-ViT-S, Inception FID) | value |\n|---|---|\n"
    "| speed-up of sampling with early exits | > 40% (README: 'more than 40% speed-up') |\n"
    "| FID cost of that speed-up | 'minimal performance drop' |\n"
    "| U-ViT-S CIFAR-10 FID, full model | 3.11 |\n"
    "| DeeDiff-trained model at full depth vs baseline | better on CIFAR-10 and CelebA |\n"
    "| independent reproduction (razvanmatisan/early-exiting-diffusion) | FID 79 -> 87 at 31% layers skipped |\n"
)


MIN_BASELINE_ACCURACY = 0.5  # below this the baseline does not generate (chance is 0.1): no claim is judged on it


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _fid(row: dict[str, Any]) -> str:
    ci = row.get("fid_ci")
    return _fmt(row.get("fid"), ".2f") + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def results_table(result: dict[str, Any]) -> str:
    head = (
        "| configuration | layers executed | FLOPs vs full | GFLOPs / image | sampling s | wall-clock speed-up "
        "| FID [95% CI] | class acc |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['config']} | {r['layer_fraction']:.1%} | {r['flops_fraction']:.1%} | {r['gflops_per_image']:.3f} "
        f"| {r['sampling_seconds']:.1f} | {r['speedup_wallclock']:.2f}x | {_fid(r)} "
        f"| {_fmt(r.get('class_accuracy'), '.3f')} |"
        for r in result["rows"]
    ]
    return head + "\n".join(lines) + "\n"


def quality_gate(result: dict[str, Any], min_accuracy: float = MIN_BASELINE_ACCURACY,
                 model: str = "baseline full") -> str | None:
    """Why claims resting on ``model``'s row must be withheld (it does not generate, or cannot be checked), else
    None: the baseline for every claim, ``deediff full`` for the early-exit claims."""
    name = model.removesuffix(" full")
    row = next((r for r in result["rows"] if r["config"] == model), None)
    if row is None or row.get("class_accuracy") is None:
        return (f"the {name} model's sample quality cannot be checked (no {model!r} row, or no class accuracy: "
                "unconditional data or no feature network)")
    if row["class_accuracy"] < min_accuracy:
        return (f"the {name} model's samples have class accuracy {row['class_accuracy']:.3f} < {min_accuracy} "
                "(chance: 1 / classes): it does not generate, so early exits cannot be judged on it")
    return None


def verdict(ci_low: float, ci_high: float) -> str:
    """What a paired FID gap's interval allows: a gap whose interval holds zero is no gap."""
    return "worse" if ci_low > 0 else "better" if ci_high < 0 else "no gap"


def _gap(comp: dict[str, Any]) -> str:
    """A paired FID gap with its interval and its verdict."""
    return f"{comp['gap']:+.2f} [{comp['ci_low']:+.2f}, {comp['ci_high']:+.2f}] ({verdict(comp['ci_low'], comp['ci_high'])})"


def comparison_kind(row: dict[str, Any], ref: dict[str, Any]) -> str:
    """What a sweep row is compared with: "static less" / "static more" (static truncation below or above the row's
    FLOPs), "baseline fewer steps", "schedule", or the reference's own name ("deediff full", "baseline full")."""
    name = ref["config"]
    if " static " in name:
        return "static less" if ref["flops_fraction"] < row["flops_fraction"] else "static more"
    if name.startswith("baseline ") and name.endswith(" steps"):
        return "baseline fewer steps"
    return "schedule" if " schedule " in name else name


def claims_table(result: dict[str, Any], exits: bool = True) -> str:
    """The paper's claims beside ours, from the paired FID gaps of eval.json (``comparisons``); ``exits=False``
    keeps only the full-depth DeeDiff-vs-baseline claim."""
    comps = {(c["a"], c["b"]): c for c in result.get("comparisons", [])}
    rows = {r["config"]: r for r in result["rows"]}
    lines = ["| claim | paper | ours: FID gap (row - reference) [95% paired bootstrap CI] |", "|---|---|---|"]
    if ("deediff full", "baseline full") in comps:
        lines.append("| DeeDiff model at full depth vs the baseline | better | "
                     f"{_gap(comps[('deediff full', 'baseline full')])} |")
    for (a, b), comp in comps.items():
        if not exits or not a.startswith("deediff exit"):
            continue
        row, ref = rows[a], rows[b]
        kind = comparison_kind(row, ref)
        if kind == "deediff full":
            what, paper = "minimal FID drop vs full depth", "yes (> 40% speed-up)"
        elif kind.startswith("baseline"):
            what, paper = (f"vs the baseline sampled with {ref.get('sample_steps', 'all')} steps "
                           f"({ref['flops_fraction']:.0%} FLOPs)"), "(not in the paper)"
        elif kind == "schedule":
            what, paper = "vs a static per-timestep depth schedule, matched compute", "(not in the paper)"
        else:
            side = kind.removeprefix("static ")
            what, paper = f"vs static truncation at {side} compute ({ref['flops_fraction']:.0%} FLOPs)", "(not in the paper)"
        lines.append(f"| {a} ({row['flops_fraction']:.0%} FLOPs, {row['speedup_wallclock']:.2f}x wall-clock): "
                     f"{what} ({b}) | {paper} | {_gap(comp)} |")
    return "\n".join(lines) + "\n"


def claims_section(result: dict[str, Any]) -> tuple[str, str | None]:
    """The claims section of results.md and, when the quality gate withholds it, the reason."""
    reason = quality_gate(result)
    if reason is not None:
        return f"## Claims: withheld\n\nThe claims table is withheld: {reason}.\n", reason
    exit_reason = quality_gate(result, model="deediff full")
    text = "## Claims (ours vs the paper)\n\n" + claims_table(result, exits=exit_reason is None)
    if exit_reason is not None:
        text += f"\nThe early-exit claims are withheld: {exit_reason}.\n"
        return text, f"early-exit claims only: {exit_reason}"
    return text, None


def summary(result: dict[str, Any]) -> dict[str, float]:
    """Flat headline numbers: FID, layer fraction and speed-up of every configuration."""
    out: dict[str, float] = {}
    for r in result["rows"]:
        key = r["config"].replace(" ", "_").replace("/", "of")
        for field in ("fid", "class_accuracy", "layer_fraction", "flops_fraction", "speedup_wallclock"):
            if r.get(field) is not None:
                out[f"{key}.{field}"] = r[field]
    return out


def static_match(result: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The static-truncation row of the same sweep at the depth closest to an early-exit row's average depth."""
    k = round(row["layer_fraction"] * result["n_layers"])
    return next((r for r in result["rows"] if r["threshold"] is None and r["n_layers"] == k), None)


def uem_comparison(results: dict[str, dict[str, Any]]) -> str:
    """Early exits of DeeDiff models fine-tuned with different UEM inputs, each beside static truncation of the
    same model at matched compute (``results``: variant name -> its eval.json)."""
    lines = ["| UEM input | threshold | layers executed | FLOPs vs full | FID | class acc | static depth | "
             "static FLOPs | static FID | static class acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for variant, result in results.items():
        for row in result["rows"]:
            if row["config"] == "deediff full":
                lines.append(f"| {variant} | full depth | 100.0% | 100.0% | {_fmt(row.get('fid'), '.2f')} "
                             f"| {_fmt(row.get('class_accuracy'), '.3f')} | | | | |")
            if row["threshold"] is None:
                continue
            st = static_match(result, row)
            static = (f"{st['n_layers']}/{result['n_layers']} | {st['flops_fraction']:.1%} | {_fmt(st.get('fid'), '.2f')} "
                      f"| {_fmt(st.get('class_accuracy'), '.3f')}") if st else "full | 100.0% | (the full row) | "
            lines.append(f"| {variant} | {row['threshold']:g} | {row['layer_fraction']:.1%} | {row['flops_fraction']:.1%} "
                         f"| {_fmt(row.get('fid'), '.2f')} | {_fmt(row.get('class_accuracy'), '.3f')} | {static} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any], title: str) -> str:
    notes = (
        f"Sampler: {result['sampler']} with {result['sample_steps']} steps, {result['eval_samples']} samples per "
        f"configuration (same initial noise for all), {result['n_layers']} layers, "
        f"{result['full_gflops_per_pass']:.4f} GFLOPs per full forward pass.\n"
        f"FID feature network: {result['feature_net']} (comparable only within this repo, not with Inception FIDs).\n"
    )
    if "fid_real_train_floor" in result:
        notes += f"FID of {result['eval_samples']} real training images (the floor at this sample size): " \
                 f"{result['fid_real_train_floor']:.2f}.\n"
    return f"# {title}\n\n{notes}\n{results_table(result)}\n{PAPER_CLAIMS}"


def finetune_section(train_metrics: dict[str, Any]) -> str:
    """results.md's fine-tuning checkpoint selection: the validation curve and the step kept (empty without one)."""
    curve = train_metrics.get("finetune_validation")
    if not curve:
        return ""
    chosen = train_metrics["finetune_selected_step"]
    lines = ["| fine-tuning step | validation FID (training-split statistics) | class accuracy |", "|---|---|---|",
             f"| 0 (the baseline) | {train_metrics['baseline_val_fid']:.2f} | {train_metrics['baseline_val_class_accuracy']:.3f} |"]
    lines += [f"| {r['stage_step']}{' (kept)' if r['stage_step'] == chosen else ''} | {r['val_fid']:.2f} "
              f"| {r['val_class_accuracy']:.3f} |" for r in curve]
    return ("## DeeDiff fine-tuning: checkpoint selection\n\nThe full-depth EMA model scored every few steps on its own "
            "samples against the training split (the test split is kept for the tables above); the lowest-FID "
            "snapshot is `deediff.pt` (as AdaDiff's train.py keeps its best-FID checkpoint).\n\n" + "\n".join(lines) + "\n")


def plot_finetune_validation(runs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Validation FID and class accuracy of the full-depth model against fine-tuning steps, one colour per run
    (``runs``: name -> train metrics.json), the kept step dotted and the baseline's FID dashed."""
    runs = {name: m for name, m in runs.items() if m.get("finetune_validation")}
    if not runs:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for (name, m), colour in zip(runs.items(), itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])):
        steps = [r["stage_step"] for r in m["finetune_validation"]]
        ax1.plot(steps, [r["val_fid"] for r in m["finetune_validation"]], "o-", ms=3, color=colour, label=name)
        ax2.plot(steps, [r["val_class_accuracy"] for r in m["finetune_validation"]], "o-", ms=3, color=colour, label=name)
        for ax, key in ((ax1, "baseline_val_fid"), (ax2, "baseline_val_class_accuracy")):
            ax.axvline(m["finetune_selected_step"], color=colour, ls=":", lw=1)
            if key in m:
                ax.axhline(m[key], color=colour, ls="--", lw=1)
    ax1.set_yscale("log")
    ax1.set_ylabel("validation FID, full depth (dashed: the baseline)")
    ax2.set_ylabel("class accuracy of samples, full depth")
    ax2.set_ylim(0, 1.02)
    for ax in (ax1, ax2):
        ax.set_xlabel("DeeDiff fine-tuning step (dotted: the kept snapshot)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, dpi=110)


def _save(fig: Any, path: Path, dpi: int) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_all(result: dict[str, Any], samples: dict[str, np.ndarray], out: Path) -> list[Path]:
    """fid_vs_compute.png, exit_depth_vs_timestep.png, exit_error_per_layer.png and samples.png in ``out``."""
    rows, paths = result["rows"], []
    if any("fid" in r for r in rows):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for kind, marker, label in (("exit", "o-", "deediff exit"), ("static", "s--", "deediff static"),
                                    ("schedule", "^:", "deediff schedule"), (" steps", "d-.", "baseline, fewer steps")):
            pts = sorted((r["flops_fraction"], r["fid"], r["config"]) for r in rows if kind in r["config"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, label=label)
        for r in rows:
            if r["config"].endswith("full"):
                ax.plot(r["flops_fraction"], r["fid"], "*", ms=12, label=r["config"])
        ax.set_xlabel("FLOPs per sample / full model at all sampling steps")
        ax.set_ylabel(f"FID ({result['feature_net'].split(' ')[0]})")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / "fid_vs_compute.png", dpi=110))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        if r["threshold"] is not None:
            ax.plot(r["t_by_step"], r["depth_by_step"], label=f"threshold {r['threshold']:g}")
    ax.set_xlabel("diffusion time t (1 = pure noise)")
    ax.set_ylabel("mean layers executed")
    ax.set_ylim(0, result["n_layers"] + 0.5)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "exit_depth_vs_timestep.png", dpi=110))
    fig, ax1 = plt.subplots(figsize=(5.5, 4))
    layers = np.arange(1, result["n_layers"] + 1)
    for name, diag in result["diagnostics"].items():
        ax1.plot(layers, diag["exit_mse"], "o-", label=f"{name}: exit noise MSE")
    ax1.set_yscale("log")
    ax1.set_xlabel("exit layer")
    ax1.set_ylabel("noise-prediction MSE (test images, random t)")
    ax2 = ax1.twinx()
    ax2.plot(layers, result["diagnostics"]["deediff"]["mean_certainty"], "k:", label="deediff: mean certainty")
    ax2.set_ylabel("mean certainty")
    ax1.legend(loc="upper center", fontsize=8)
    ax2.legend(loc="center right", fontsize=8)
    paths.append(_save(fig, out / "exit_error_per_layer.png", dpi=110))
    names = list(samples)
    n_show = min(len(v) for v in samples.values())
    fig, axes = plt.subplots(len(names), 1, figsize=(n_show * 0.45 + 2.2, len(names) * 0.55 + 0.2), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        strip = np.concatenate(list(samples[name][:n_show]), axis=1)  # (H, n W, C), C = 1 (grey) or 3 (RGB)
        ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    paths.append(_save(fig, out / "samples.png", dpi=80))
    return paths


def main(argv: list[str] | None = None) -> Path | None:
    """``python -m papers.deediff.report RUN_DIR [RUN_DIR ...] --out FILE.png``: the fine-tuning validation curves of
    several train or reproduce runs (their metrics.json) in one figure, each named by its folder."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "metrics.json").exists()]
    if missing:
        raise UserError(f"no metrics.json in {', '.join(missing)}: give finished train or reproduce run folders")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = plot_finetune_validation({r.name: json.loads((r / "metrics.json").read_text()) for r in args.runs}, args.out)
    if path is None:
        raise UserError("none of these runs validated its fine-tuning (finetune_eval_every: 0)")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
