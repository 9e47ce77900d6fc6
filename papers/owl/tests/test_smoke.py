"""CI's smoke run: the real entry points on configs/smoke.yaml (tiny random LLaMA and OPT), then what they wrote."""

import json
import math
from pathlib import Path

import pytest

from papers.owl import bench, evaluate, reproduce, train

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


@pytest.mark.smoke
def test_reproduce_on_smoke_config(tmp_path: Path) -> None:
    results = reproduce.main(["--config", SMOKE, "--out", str(tmp_path)])
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "results.md", "results.json",
                 "sweep.png", "grid.png", "owl_layers.png", "owl_layer_report.json"):
        assert (tmp_path / name).exists(), name
    rows = results["rows"]
    assert len(rows) == 1 + 5 + 2 + 1  # dense, the table, the 50% sweep, the M=3 grid point (M=5 is the table's)
    assert "| M \\ lambda | 0.08 |" in (tmp_path / "results.md").read_text()
    for row in rows.values():
        assert math.isfinite(row["ppl_synthetic"]) and 1.0 < row["ppl_synthetic"] < 1000.0
    assert rows["dense@0"]["overall_sparsity"] == 0.0
    assert rows["wanda@0.7"]["overall_sparsity"] == pytest.approx(0.7, abs=0.02)
    assert "| owl_sparsegpt |" in (tmp_path / "results.md").read_text()


@pytest.mark.smoke
def test_train_then_evaluate_on_opt(tmp_path: Path) -> None:
    args = ["--config", SMOKE, "--out", str(tmp_path), "model=tiny_opt", 'sparsity_type="2:4"', "method=owl_wanda"]
    metrics = train.main(args)
    assert metrics["overall_sparsity"] == pytest.approx(0.5, abs=0.13)  # OWL moves N per block around N=2
    assert (tmp_path / "pruned_model" / "model.safetensors").is_file()
    report = json.loads((tmp_path / "layer_report.json").read_text())
    assert len(report["outlier_ratios"]) == 4 and (tmp_path / "layer_report.png").is_file()
    assert not (tmp_path / "checkpoints").exists()
    scores = evaluate.main(args)
    assert math.isfinite(scores["ppl_synthetic"]) and scores["overall_sparsity"] == pytest.approx(metrics["overall_sparsity"])


@pytest.mark.smoke
def test_bench_on_smoke_config(tmp_path: Path) -> None:
    result = bench.main(["--config", SMOKE, "--out", str(tmp_path)])
    assert (tmp_path / "bench.json").is_file()
    for pruner in ("magnitude", "wanda", "sparsegpt"):
        assert result[pruner]["seconds"] > 0 and result[pruner]["peak_extra_bytes"] >= 0
    assert result["eval_tokens_per_s"] > 0
