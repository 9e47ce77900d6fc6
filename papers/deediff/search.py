"""A logged search for a U-ViT baseline that generates: ``python -m papers.deediff.search --config
papers/deediff/configs/search_small.yaml --out DIR [key=value ...]``.

Each candidate (overrides of a base config: patch size, width/depth, long skips, lr and warm-up, batch, EMA,
MNIST at 28x28 or 14x14) trains a baseline for ``steps`` steps, scored every ``eval_every`` steps by the class
accuracy and FID of ``eval_samples`` DDIM samples of its EMA model and by its label reliance on fixed training
images (``diagnose.label_reliance``); ``stop_accuracy`` ends a candidate at its first evaluation above it. The
candidate with the best final class accuracy (then the lower FID) is chosen. ``overfit_images: 10`` runs the
search in the overfit-first regime (10 training images, one per class: class accuracy = label match), a cheap
filter where full data cannot be afforded. Every candidate's final EMA weights are cached outside the repo
(``data_home()/deediff/<cache>/<candidate>-<config hash>/baseline.pt``, with its sha256; beside them
``ema-step<N>.pt`` from every evaluation) and reused by a later search with the same resolved config. Writes
search.json and search_curves.png; the chosen baseline serves ``train`` / ``reproduce`` through
``finetune_from=<its path> baseline_steps=0``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from papers.deediff.config import Config
from papers.deediff.data import load_images
from papers.deediff.diagnose import (
    fit,
    label_probe,
    label_reliance,
    one_per_class,
    plot_curves,
)
from papers.deediff.diffusion import VPSDE
from papers.deediff.model import UViT
from papers.deediff.sweep import ExitPolicy, generate
from papers.deediff.train import configure_torch
from papers.deediff.validation import sample_scores
from shared.runs import Run, UserError, entrypoint, load_config, parse_run_args, save_checkpoint
from shared.runs.config import to_dict
from shared.runs.rundir import config_digest


@dataclasses.dataclass
class SearchConfig:
    """Candidates (name -> overrides of ``base``) and the short-run budget each gets."""

    base: str  # a Config YAML (path relative to the repo root or to this file's folder)
    candidates: dict[str, list[str]]
    overrides: list[str] = dataclasses.field(default_factory=list)  # applied to every candidate first
    steps: int = 600
    eval_every: int = 200
    eval_samples: int = 100
    target_accuracy: float = 0.8  # the bar for a generating baseline
    stop_accuracy: float = 0.0  # > 0: a candidate stops at its first evaluation above this class accuracy
    overfit_images: int = 0  # > 0: train on that many images, one per class (the overfit-first protocol); 0 = all
    cache: str = "search_small"  # folder under data_home()/deediff (or an absolute path)

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("candidates is empty: give at least one name -> [overrides]")
        if self.steps <= 0 or self.eval_every <= 0 or self.eval_samples <= 1:
            raise ValueError("steps, eval_every must be positive and eval_samples > 1")
        if not 0.0 <= self.stop_accuracy < 1.0:
            raise ValueError(f"stop_accuracy must be in [0, 1) (0 = never stop early), got {self.stop_accuracy}")


def config_path(name: str, config_dir: Path) -> Path:
    """A config named relative to the working directory (the repo root) or, failing that, to ``config_dir``."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else config_dir / path.name


def candidate_config(search: SearchConfig, config_dir: Path, overrides: list[str]) -> Config:
    return load_config(Config, config_path(search.base, config_dir), [*search.overrides, *overrides])


# Config keys that cannot change a search's baseline weights (the fine-tuning stage, the sweep, the benchmark, where
# files go, how a process runs); every ``finetune_*`` key too. Any other key, present or future, is in the cache key.
NOT_BASELINE_KEYS = frozenset({
    "device", "precision", "micro_batch_size", "strategy", "threads", "weights_dir", "baseline_steps",
    "uem_timestep_aware", "uem_weight", "layerwise_weight", "checkpoint_every", "log_every", "eval_samples",
    "eval_batch_size", "thresholds", "patience", "bootstrap", "bench_batch_sizes", "bench_threshold",
    "bench_repeats", "compare_timestep_aware_uem",
})


def config_hash(cfg: Config, search: SearchConfig) -> str:
    """Hash of what determines a candidate's weights: the config keys its baseline training and stop rule read
    (not the fine-tuning or sweep keys, so adding or changing those keeps the cache) and the step budget."""
    baseline_keys = {k: v for k, v in to_dict(cfg).items() if k not in NOT_BASELINE_KEYS and not k.startswith("finetune_")}
    spec = {**baseline_keys, "search_steps": search.steps, "overfit_images": search.overfit_images,
            **({"stop_accuracy": search.stop_accuracy} if search.stop_accuracy else {})}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_candidate(name: str, cfg: Config, search: SearchConfig, cache: Path, run: Run) -> dict[str, Any]:
    """Train (or reuse from the cache) one candidate and return its curve, weights path and checksum."""
    folder = cache / f"{name}-{config_hash(cfg, search)}"
    weights, record = folder / "baseline.pt", folder / "candidate.json"
    if weights.exists() and record.exists():
        entry = json.loads(record.read_text())
        if entry["sha256"] == file_sha256(weights):
            print(f"{name}: reusing cached weights {weights} (sha256 {entry['sha256'][:12]})", flush=True)
            return {**entry, "reused": True}
        print(f"{name}: cached weights fail their checksum; retraining", flush=True)
    from shared.metrics.feature_net import image_feature_network

    device = configure_torch(cfg)
    images, labels = load_images(cfg, "train")
    if search.overfit_images:
        keep = one_per_class(labels, search.overfit_images)
        images, labels = images[keep], labels[keep]
    net = image_feature_network(cfg.dataset)
    ref = net.reference_stats("test")
    eval_cfg = dataclasses.replace(cfg, eval_batch_size=search.eval_samples)
    sde = VPSDE(cfg.beta_min, cfg.beta_max)
    probe_x, probe_y, probe_noise = (v.to(device) for v in label_probe(images, labels, cfg.seed + 2))

    def score(model: torch.nn.Module, step: int) -> dict[str, float]:
        save_checkpoint(folder / f"ema-step{step}.pt", {"model": model.state_dict(), "step": step, "config": to_dict(cfg)})
        samples, sample_labels, *_ = generate(model, eval_cfg, ExitPolicy("full"), search.eval_samples, cfg.seed + 1)
        scores = sample_scores(net, ref, samples, sample_labels)
        if cfg.num_classes > 0:
            scores |= label_reliance(model, sde, probe_x, probe_y, probe_noise)
        return scores

    def log(row: dict[str, Any]) -> None:
        run.log(len(run.history()), candidate=name, **{("train_step" if k == "step" else k): v for k, v in row.items()})
        print(name, row, flush=True)

    model = UViT(cfg).to(device)
    ema, curve = fit(cfg, model, images, labels, search.steps, search.eval_every, score,
                     target=search.stop_accuracy or None, log=log)
    save_checkpoint(weights, {"model": ema.state_dict(), "step": curve[-1]["step"], "config": to_dict(cfg)})
    entry = {"name": name, "weights": str(weights), "sha256": file_sha256(weights), "curve": curve,
             "parameters": sum(p.numel() for p in model.backbone_parameters()),
             "final_class_accuracy": curve[-1]["class_accuracy"], "final_fid": curve[-1]["fid"]}
    record.write_text(json.dumps(entry, indent=2))
    return {**entry, "reused": False}


def cache_dir(search_cfg: SearchConfig) -> Path:
    """The folder of the search's cached candidates: ``cache`` itself when absolute, else under the data home."""
    from shared.data import data_home

    return Path(search_cfg.cache) if Path(search_cfg.cache).is_absolute() else data_home() / "deediff" / search_cfg.cache


def search(search_cfg: SearchConfig, config_dir: Path, out: Path, overwrite: bool = False) -> dict[str, Any]:
    run = Run(out, search_cfg, overwrite=overwrite)
    cache = cache_dir(search_cfg)
    results = {}
    for name, overrides in search_cfg.candidates.items():
        cfg = candidate_config(search_cfg, config_dir, overrides)
        results[name] = {"overrides": overrides, **run_candidate(name, cfg, search_cfg, cache, run)}
    chosen = max(results, key=lambda n: (results[n]["final_class_accuracy"], -results[n]["final_fid"]))
    best = results[chosen]
    summary = {
        "chosen": chosen, "chosen_weights": best["weights"], "chosen_sha256": best["sha256"],
        "chosen_class_accuracy": best["final_class_accuracy"], "chosen_fid": best["final_fid"],
        "reached_target": best["final_class_accuracy"] >= search_cfg.target_accuracy,
        "cpu_seconds": sum(r["curve"][-1]["cpu_seconds"] for r in results.values()),
    }
    (out / "search.json").write_text(json.dumps({**summary, "candidates": results}, indent=2))
    plot_curves({n: r["curve"] for n, r in results.items()}, out / "search_curves.png",
                f"U-ViT design search: {search_cfg.steps} steps each", target=search_cfg.target_accuracy)
    verdict = "reaches" if summary["reached_target"] else "does NOT reach"
    print(f"chosen {chosen}: class accuracy {best['final_class_accuracy']:.3f} (FID {best['final_fid']:.1f}) "
          f"{verdict} the target {search_cfg.target_accuracy}; weights {best['weights']}", flush=True)
    return run.finish({k: v for k, v in summary.items() if isinstance(v, (int, float))})


def searched_baseline(cfg: Config, config_dir: Path) -> Config:
    """``cfg`` with ``finetune_from`` set to the baseline its ``finetune_from_search`` config chooses (unchanged
    without one). The search reuses the cached weights whose checksum holds and trains only what is missing; its
    run folder lies beside them (``<cache>/runs/<config hash>``), and each candidate's record (curve, sha256) is
    ``candidate.json`` next to its weights."""
    if not cfg.finetune_from_search:
        return cfg
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("finetune_from_search runs a single-process search: run it once without torchrun (or "
                         "reproduce), then pass finetune_from=<its baseline.pt> finetune_from_search=''")
    path = config_path(cfg.finetune_from_search, config_dir)
    spec = load_config(SearchConfig, path)
    search_dir = cache_dir(spec) / "runs" / config_digest(to_dict(spec))[:12]
    search(spec, path.resolve().parent, search_dir)
    chosen = json.loads((search_dir / "search.json").read_text())["chosen_weights"]
    return dataclasses.replace(cfg, finetune_from=chosen, finetune_from_search="")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(SearchConfig, args.config, args.overrides)
    return search(cfg, Path(args.config).resolve().parent, Path(args.out), overwrite=args.overwrite)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
