"""The DeeDiff sweep on a trained run: ``python -m papers.deediff.evaluate --config FILE --out TRAIN_RUN_DIR``.

For the baseline and the DeeDiff model at full depth, DeeDiff early exits over ``thresholds``, static truncation
at the two depths that bracket each early exit's mean depth, for each threshold a static per-timestep depth schedule (the
exit run's mean depth at every sampling step, rounded, the same for all samples), and the baseline sampled with fewer
steps at about each exit's FLOPs: FID with a bootstrap interval
(the repo's named feature network), class accuracy of the samples, fraction of layers executed, FLOPs and
wall-clock sampling time; paired bootstrap intervals on the FID gaps the claims rest on. Writes eval.json and
samples.npz.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from papers.deediff.config import FEATURE_NET_DATASETS, Config
from papers.deediff.data import at_size, load_images
from papers.deediff.diffusion import VPSDE, mean_sq, net_time
from papers.deediff.model import UViT
from papers.deediff.search import searched_baseline
from papers.deediff.stats import fid_ci, paired_fid_gap
from papers.deediff.sweep import ExitPolicy, flop_table, generate
from papers.deediff.train import configure_torch, load_weights
from shared.metrics import FeatureStats, frechet_distance
from shared.runs import entrypoint, load_config, parse_run_args

SAMPLES_SHOWN = 20


@torch.no_grad()
def layer_diagnostics(model: UViT, cfg: Config, n: int = 500, seed: int = 1) -> dict[str, list[float]]:
    """Noise-prediction MSE of every exit and mean certainty of every UEM on test images at random t."""
    x0, y = load_images(cfg, "test", limit=4 * n)  # a prefix: CelebA's test split is 20k JPEGs
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x0), generator=gen)[:n]
    t = torch.rand(len(idx), generator=gen)
    noise = torch.randn(x0[idx].shape, generator=gen)
    xt = VPSDE(cfg.beta_min, cfg.beta_max).perturb(x0[idx], t, noise)
    preds, certainties = model.forward_all_exits(xt, net_time(t), y[idx] if cfg.num_classes > 0 else None)
    return {
        "exit_mse": [float(mean_sq(noise - p).mean()) for p in preds],
        "mean_certainty": [float(c.mean()) for c in certainties],
    }


def evaluate(cfg: Config, run_dir: str | Path, baseline_row: bool = True) -> dict[str, Any]:
    """The sweep of the module docstring; ``baseline_row=False`` leaves out sampling the baseline."""
    configure_torch(cfg)
    run_dir = Path(run_dir)
    weights = cfg.weights_path(run_dir)
    baseline = Path(cfg.finetune_from) if cfg.finetune_from else weights / "baseline.pt"
    models = {"baseline": load_weights(baseline, cfg, backbone_only=True), "deediff": load_weights(weights / "deediff.pt", cfg)}
    n_layers = models["deediff"].n_layers
    net = ref = None
    if cfg.dataset in FEATURE_NET_DATASETS:
        from shared.metrics.feature_net import image_feature_network

        net = image_feature_network(cfg.dataset)
        ref = net.reference_stats("test")
    flops = flop_table(models["deediff"], cfg)
    full_flops = flops.static[-1]

    def measure(model_name: str, policy: ExitPolicy, sample_steps: int = cfg.sample_steps) -> dict[str, Any]:
        run_cfg = dataclasses.replace(cfg, sample_steps=sample_steps)
        images, labels, depth, times, seconds = generate(models[model_name], run_cfg, policy, cfg.eval_samples, cfg.seed + 1)
        per_pass = flops.early_exit(depth, n_layers) if policy.threshold is not None else np.asarray(flops.static)[depth - 1]
        row = {
            "config": policy.name, "model": model_name, "threshold": policy.threshold, "n_layers": policy.n_layers,
            "sample_steps": sample_steps, "layer_fraction": float(depth.mean() / n_layers),
            "gflops_per_image": float(per_pass.sum(0).mean() / 1e9),
            # FLOPs of a whole sampling run per image, against the full model over the config's sample_steps
            "flops_fraction": float(per_pass.sum(0).mean() / (cfg.sample_steps * full_flops)),
            "sampling_seconds": seconds,
            "depth_by_step": depth.mean(1).tolist(), "t_by_step": times.tolist(),
        }
        if policy.schedule is not None:
            row["schedule"] = list(policy.schedule)
        if net is not None:
            scored = at_size(images)  # 14x14 configs are scored at the feature network's 28x28
            features[policy.name] = net.features(scored)
            row["fid"] = frechet_distance(FeatureStats.from_features(features[policy.name], net.name), ref)
            if cfg.bootstrap:
                row["fid_ci"] = list(fid_ci(features[policy.name], ref, cfg.bootstrap, cfg.seed))
            if cfg.num_classes > 0:
                row["class_accuracy"] = float((net.predict(scored) == labels.numpy()).mean())
        shown = images[:SAMPLES_SHOWN].permute(0, 2, 3, 1)  # (n, H, W, C)
        samples[policy.name] = ((shown + 1) * 127.5).round().to(torch.uint8).numpy()
        return row

    samples: dict[str, np.ndarray] = {}
    features: dict[str, np.ndarray] = {}
    plan = [("baseline", ExitPolicy("baseline full"))] if baseline_row else []
    plan += [("deediff", ExitPolicy("deediff full"))]
    plan += [("deediff", ExitPolicy(f"deediff exit {thr:g}", threshold=thr, patience=cfg.patience)) for thr in cfg.thresholds]
    rows = []
    for model_name, policy in tqdm(plan, desc="sweep"):
        rows.append(measure(model_name, policy))
    exits = [r for r in rows if r["threshold"] is not None]
    static_depths = sorted({k for r in exits for k in static_bracket(r["layer_fraction"], n_layers)})
    for k in tqdm([k for k in static_depths if 1 <= k < n_layers], desc="static"):
        rows.append(measure("deediff", ExitPolicy(f"deediff static {k}/{n_layers}", n_layers=k)))
    for r in tqdm(exits, desc="schedule"):  # matched compute per sampling step, not just on average
        schedule = tuple(int(d) for d in np.clip(np.rint(r["depth_by_step"]), 1, n_layers))
        rows.append(measure("deediff", ExitPolicy(f"deediff schedule {r['threshold']:g}", schedule=schedule)))
    if baseline_row:  # the plain way to spend less compute: the baseline with fewer sampling steps
        for k in tqdm(sorted({fewer_steps(r["flops_fraction"], cfg.sample_steps) for r in exits} - {cfg.sample_steps}),
                      desc="fewer steps"):
            rows.append(measure("baseline", ExitPolicy(f"baseline {cfg.sampler} {k} steps"), sample_steps=k))
    full_seconds = next(r["sampling_seconds"] for r in rows if r["config"] == "deediff full")
    for r in rows:
        r["speedup_wallclock"] = full_seconds / r["sampling_seconds"]
    result: dict[str, Any] = {
        "n_layers": n_layers, "sampler": cfg.sampler, "sample_steps": cfg.sample_steps, "eval_samples": cfg.eval_samples,
        "feature_net": net.name if net is not None else None, "full_gflops_per_pass": full_flops / 1e9, "rows": rows,
        "diagnostics": {name: layer_diagnostics(m, cfg) for name, m in models.items()},
    }
    if net is not None and cfg.bootstrap:
        result["comparisons"] = [
            {"a": a, "b": b, **paired_fid_gap(features[a], features[b], ref, cfg.bootstrap, cfg.seed)}
            for a, b in comparisons(rows, n_layers) if a in features and b in features
        ]
    if net is not None:  # FID of as many real training images: the floor this sample size allows
        real, _ = load_images(cfg, "train")
        pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(cfg.seed + 2))[: cfg.eval_samples]
        result["fid_real_train_floor"] = frechet_distance(FeatureStats.from_features(net.features(at_size(real[pick])), net.name), ref)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    np.savez_compressed(run_dir / "samples.npz", **samples)
    return result


def static_bracket(layer_fraction: float, n_layers: int) -> tuple[int, int]:
    """The static depths just below and just above an early-exit row's mean depth (one depth when it is whole), so
    that static truncation is compared at less and at more compute than the exits use."""
    depth = layer_fraction * n_layers
    return max(1, math.floor(depth + 1e-9)), min(n_layers, math.ceil(depth - 1e-9))


def fewer_steps(flops_fraction: float, sample_steps: int) -> int:
    """The number of sampling steps at which the full baseline spends about ``flops_fraction`` of a full run."""
    return max(1, min(sample_steps, round(flops_fraction * sample_steps)))


def comparisons(rows: list[dict[str, Any]], n_layers: int) -> list[tuple[str, str]]:
    """The paired FID gaps the claims rest on: the DeeDiff model at full depth vs the baseline, and each early-exit
    row vs the full DeeDiff model, vs static truncation at the depths bracketing its mean depth, vs its per-step
    schedule and vs the baseline sampled with fewer steps at about the same FLOPs (same initial noise)."""
    names = {r["config"] for r in rows}
    pairs = [("deediff full", "baseline full")]
    for r in rows:
        if r["threshold"] is None:
            continue
        pairs.append((r["config"], "deediff full"))
        for k in static_bracket(r["layer_fraction"], n_layers):
            pairs.append((r["config"], "deediff full" if k >= n_layers else f"deediff static {k}/{n_layers}"))
        pairs.append((r["config"], f"deediff schedule {r['threshold']:g}"))
        if r.get("sample_steps"):
            k = fewer_steps(r["flops_fraction"], r["sample_steps"])
            pairs.append((r["config"], next((n for n in names if n.startswith("baseline ") and n.endswith(f" {k} steps")),
                                            "baseline full")))
    return [p for p in dict.fromkeys(pairs) if p[0] != p[1] and set(p) <= names]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    return evaluate(searched_baseline(cfg, Path(args.config).resolve().parent), args.out)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
