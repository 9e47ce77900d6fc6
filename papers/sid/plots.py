"""FID against generator samples seen for the image runs of reproduce folders, with the teachers' FIDs as lines:
``python -m papers.sid.plots RUN_DIR [RUN_DIR ...] [--out PNG]`` (folders as written by papers.sid.reproduce, e.g.
one per seed; default output RUN_DIR/fid_vs_images.png of the first)."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def fid_curves(run_dirs: list[Path], out: Path) -> Path:
    """Per image SiD run under each run_dir/image: its EMA curve (solid), its raw-generator curve (dotted) and its
    teacher's FID on the same run's sample draw (dashed), all in one colour per run."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    runs = [(d, m) for d in run_dirs for m in sorted((d / "image").glob("**/metrics.jsonl"))]
    if not runs:
        raise FileNotFoundError(f"no image/**/metrics.jsonl under {', '.join(map(str, run_dirs))}")
    for (run_dir, metrics), color in zip(runs, itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])):
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        rows = [r for r in rows if "eval_fid" in r]
        name = metrics.parent.relative_to(run_dir / "image").as_posix() if metrics.parent != run_dir / "image" else "uncond"
        name = f"{run_dir.name}/{name}" if len(run_dirs) > 1 else name
        seen = [r["images_seen"] for r in rows]
        ax.plot(seen, [r["eval_fid"] for r in rows], marker="o", ms=3, color=color, label=f"{name} EMA")
        if rows and "eval_raw_fid" in rows[0]:
            ax.plot(seen, [r["eval_raw_fid"] for r in rows], marker=".", ls=":", lw=0.8, color=color, label=f"{name} raw")
        eval_file = metrics.parent / "eval.json"
        if eval_file.exists():
            teacher = [r for r in json.loads(eval_file.read_text())["rows"] if r["sampler"].startswith("teacher")]
            for r in teacher[:1]:
                ax.axhline(r["fid"], color=color, ls="--", lw=1, label=f"teacher {r['sampler'][8:]} ({r['fid']:.1f})")
    ax.set_xlabel("generator samples seen")
    ax.set_ylabel("FID (repo feature network, 1000 samples)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default RUN_DIR/fid_vs_images.png)")
    args = parser.parse_args(argv)
    return fid_curves(args.run_dirs, args.out or args.run_dirs[0] / "fid_vs_images.png")


if __name__ == "__main__":
    print(main())
