"""The whole reproduction: 2-D SiD variants against the exact mixture teacher, then (optionally) a small image run.
``python -m papers.sid.reproduce --config papers/sid/configs/small.yaml --out papers/sid/results/small``"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from papers.sid import evaluate, train
from papers.sid.config import Config
from papers.sid.plots import fid_curves
from shared.runs import Run, entrypoint, load_config, parse_run_args

TOY_VARIANTS: dict[str, list[str]] = {
    "alpha1.0": ["alpha=1.0"],
    "alpha1.2": ["alpha=1.2"],
    "fewstep2": ["alpha=1.2", "gen_steps=2"],
    "fewstep4": ["alpha=1.2", "gen_steps=4"],
    "cond": ["conditional=true", "guidance=none"],
    "cfg": ["conditional=true", "guidance=cfg"],
    "zero_cfg": ["conditional=true", "guidance=zero_cfg"],
    "anti_cfg": ["conditional=true", "guidance=anti_cfg"],
    # guidance-scale sweep (configs/small_guidance.yaml); cfg = 2.0 and anti_cfg = -1.0 are the defaults above
    "cfg1.2": ["conditional=true", "guidance=cfg", "teacher_cfg=1.2"],
    "cfg1.5": ["conditional=true", "guidance=cfg", "teacher_cfg=1.5"],
    "lsg1.5": ["conditional=true", "guidance=lsg", "teacher_cfg=1.5", "alpha=1.0"],  # SiD-LSG scripts: alpha 1
    "lsg2.0": ["conditional=true", "guidance=lsg", "teacher_cfg=2.0", "alpha=1.0"],
    # the EDM-trained MLP as the teacher (as in the paper: the teacher is a trained network), and Diffusion-GAN
    "mlp_teacher": ["alpha=1.2", "toy_teacher=mlp"],
    "fewstep2_gan": ["alpha=1.2", "gen_steps=2", "gan=true"],
    "anti_cfg-0.1": ["conditional=true", "guidance=anti_cfg", "anti_cfg=-0.1"],
    "anti_cfg-0.3": ["conditional=true", "guidance=anti_cfg", "anti_cfg=-0.3"],
    "anti_cfg-0.5": ["conditional=true", "guidance=anti_cfg", "anti_cfg=-0.5"],
    # more seeds for alpha 1.0 vs 1.2 (configs/small_seeds.yaml)
    **{f"alpha{a}_seed{s}": [f"alpha={a}", f"seed={s}"] for a in ("1.0", "1.2") for s in (1, 2)},
}
IMAGE_VARIANTS: dict[str, list[str]] = {
    "uncond": ["conditional=false", "guidance=none"],
    "cond": ["conditional=true", "guidance=none"],
    "cfg": ["conditional=true", "guidance=cfg"],
    "lsg": ["conditional=true", "guidance=lsg", "alpha=1.0"],
    "uncond_seed1": ["conditional=false", "guidance=none", "seed=1"],  # SiD seeds of one teacher (teacher_seed)
    "uncond_seed2": ["conditional=false", "guidance=none", "seed=2"],
    "uncond_gan": ["conditional=false", "guidance=none", "gan=true"],
    "zero_cfg": ["conditional=true", "guidance=zero_cfg"],
    "anti_cfg": ["conditional=true", "guidance=anti_cfg"],
}
PAPER = ("Paper (CIFAR-10 32x32, Inception FID, 50k samples): unconditional SiD one-step 1.923 vs EDM teacher 1.97 "
         "(35 NFE); conditional SiD 1.710 vs EDM 1.79. The 2-D and MNIST numbers below are not comparable with them.")
COLUMNS = ("energy_distance", "mmd", "modes_covered", "near_mode_fraction", "class_accuracy",
           "within_class_std_ratio", "fid", "within_class_diversity", "samples_per_s")


def run_variant(config: str, out: Path, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any], float]:
    start = time.perf_counter()
    train_metrics = train.main(["--config", config, "--out", str(out), *overrides])
    result = evaluate.main(["--config", config, "--out", str(out), *overrides])
    return train_metrics, result, time.perf_counter() - start


def curve(out: Path, key: str) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if f"eval_{key}" in r]
    return [r["images_seen"] for r in rows], [r[f"eval_{key}"] for r in rows]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "nan"
    return str(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, "Reproduce SiD on a 2-D mixture (exact teacher) and a small image teacher.")
    cfg = load_config(Config, args.config, args.overrides)
    out = Path(args.out)
    run = Run(out, cfg, tensorboard=False)
    rows, curves, timings = [], {}, {}
    for name in cfg.toy_variants if cfg.task == "toy" else []:
        if name not in TOY_VARIANTS:
            raise ValueError(f"unknown toy variant {name!r}; choose from {sorted(TOY_VARIANTS)}")
        sub = out / "toy" / name
        train_metrics, result, seconds = run_variant(args.config, sub, [*args.overrides, *TOY_VARIANTS[name], "task=toy"])
        timings[f"toy/{name}"] = seconds
        timings[f"toy/{name}/sid_training"] = train_metrics["train_seconds"]
        curves[name] = curve(sub, "energy_distance")
        rows += [{"part": "2-D", "variant": name, **r} for r in result["rows"]]
    feature_net = None
    image = [(args.config, args.overrides)] if cfg.task == "image" else [(cfg.image_config, [])] if cfg.image_config else []
    for config, overrides in image:
        icfg = load_config(Config, config, overrides)
        for name in icfg.image_variants:
            if name not in IMAGE_VARIANTS:
                raise ValueError(f"unknown image variant {name!r}; choose from {sorted(IMAGE_VARIANTS)}")
            sub, key = (out / "image", "image") if name == "uncond" else (out / "image" / name, f"image/{name}")
            train_metrics, result, seconds = run_variant(config, sub, [*overrides, *IMAGE_VARIANTS[name]])
            timings[key] = seconds
            timings[f"{key}/teacher_pretrain_or_load"] = train_metrics["pretrain_seconds"]
            timings[f"{key}/sid_training"] = train_metrics["train_seconds"]
            feature_net = result["feature_net"]
            variant = icfg.dataset if name == "uncond" else f"{icfg.dataset} {name}"
            rows += [{"part": "image", "variant": variant, **r} for r in result["rows"]]
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, (seen, dist) in curves.items():
            ax.plot(seen, [max(d, 1e-5) for d in dist], marker="o", ms=3, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("generator samples seen")
        ax.set_ylabel("energy distance to the true mixture")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "distance_vs_images.png", dpi=90)
        plt.close(fig)
    if feature_net:
        fid_curves([out], out / "fid_vs_images.png")  # FID vs generator samples, teacher FID line
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    lines = ["| part | variant | sampler | NFE | " + " | ".join(cols) + " |", "|" + "---|" * (4 + len(cols))]
    for r in rows:
        lines.append(f"| {r['part']} | {r['variant']} | {r['sampler']} | {r['nfe']} | "
                     + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    table = "\n".join(lines)
    notes = [f"FID feature network: {feature_net}"] if feature_net else []
    text = "\n\n".join([f"# SiD reproduction ({args.config})", table, *notes, PAPER,
                        "Wall time of this invocation per part, and cumulative SiD training time over resumed runs (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())])
    (out / "results.md").write_text(text + "\n")
    result = {"rows": rows, "curves": curves, "timings_s": timings, "feature_net": feature_net, "paper": PAPER}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(text)
    summary = {f"{r['variant']}/{r['sampler']}/{c}": r[c] for r in rows for c in ("energy_distance", "fid") if c in r}
    return run.finish(summary)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
