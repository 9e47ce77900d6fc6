"""FID against generator samples seen for the image runs of a reproduce folder, with the teacher's FID as a line:
``python -m papers.sid.plots RUN_DIR`` (RUN_DIR as written by papers.sid.reproduce; writes RUN_DIR/fid_vs_images.png)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def fid_curves(run_dir: Path) -> Path:
    """One EMA and one raw-generator curve per image SiD run under run_dir/image; dashed teacher FID lines."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for metrics in sorted((run_dir / "image").glob("**/metrics.jsonl")):
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        rows = [r for r in rows if "eval_fid" in r]
        name = metrics.parent.relative_to(run_dir / "image").as_posix() if metrics.parent != run_dir / "image" else "uncond"
        seen = [r["images_seen"] for r in rows]
        ax.plot(seen, [r["eval_fid"] for r in rows], marker="o", ms=3, label=f"{name} EMA")
        if rows and "eval_raw_fid" in rows[0]:
            ax.plot(seen, [r["eval_raw_fid"] for r in rows], marker=".", ls=":", label=f"{name} raw")
        eval_file = metrics.parent / "eval.json"
        if eval_file.exists():
            teacher = [r for r in json.loads(eval_file.read_text())["rows"] if r["sampler"].startswith("teacher")]
            for r in teacher[:1]:
                ax.axhline(r["fid"], color="k", ls="--", lw=1, label=f"teacher {r['sampler'][8:]} ({r['fid']:.1f})")
    ax.set_xlabel("generator samples seen")
    ax.set_ylabel("FID (repo feature network, 1000 samples)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = run_dir / "fid_vs_images.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    return fid_curves(parser.parse_args(argv).run_dir)


if __name__ == "__main__":
    print(main())
