"""CI smoke: every entry point on configs/smoke.yaml (tiny MLP on the exact 2-D mixture; a tiny image teacher)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from papers.sid import bench, evaluate, reproduce, train

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")


@pytest.mark.smoke
def test_smoke_entry_points(tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = train.main(["--config", CONFIG, "--out", str(run)])
    assert math.isfinite(metrics["final_loss_gen"]) and math.isfinite(metrics["final_loss_fake"])
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "generator.pt"):
        assert (run / name).is_file(), name

    result = evaluate.main(["--config", CONFIG, "--out", str(run)])
    # one-step SiD (EMA, raw) vs Heun with heun_steps=4 of the exact mixture and of the EDM-trained MLP
    assert [(r["sampler"], r["nfe"]) for r in result["rows"]] == [
        ("SiD 1-step", 1), ("SiD 1-step raw", 1), ("exact teacher Heun 7 NFE", 7), ("MLP teacher Heun 7 NFE", 7)]
    for row in result["rows"]:
        assert 0 <= row["energy_distance"] < 5 and 0 <= row["modes_covered"] <= 8 and row["samples_per_s"] > 0
    assert (run / "samples.png").is_file()

    numbers = bench.main(["--config", CONFIG, "--out", str(tmp_path / "bench")])
    for part in ("toy", "image"):
        assert numbers[part]["speedup"] > 1 and numbers[part]["train_round_seconds"] > 0

    out = tmp_path / "reproduce"
    summary = reproduce.main(["--config", CONFIG, "--out", str(out)])
    assert all(math.isfinite(v) for v in summary.values())
    results = json.loads((out / "results.json").read_text())
    parts = {(r["part"], r["variant"]) for r in results["rows"]}
    assert {("2-D", "alpha1.2"), ("2-D", "fewstep2"), ("2-D", "cfg"), ("image", "fashion_mnist")} <= parts
    image_rows = [r for r in results["rows"] if r["part"] == "image"]
    assert all(r["fid"] >= 0 for r in image_rows) and results["feature_net"].startswith("smallcnn")
    for name in ("results.md", "distance_vs_images.png", "image/samples.png", "fid_vs_images.png"):
        assert (out / name).is_file(), name
