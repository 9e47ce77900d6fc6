"""CI's smoke run: the real entry points on configs/smoke.yaml, then what they wrote."""

import json
import math
from pathlib import Path

import pytest

from papers.moduleformer import bench, reproduce

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


@pytest.mark.smoke
def test_reproduce_trains_evaluates_and_reports(tmp_path: Path) -> None:
    results = reproduce.main(["--config", SMOKE, "--out", str(tmp_path)])
    for name in ("results.md", "results.json", "expert_usage.png", "training_curves.png"):
        assert (tmp_path / name).is_file(), name
    for variant in ("moduleformer", "dense_active", "dense_total"):  # train.main and evaluate.main ran for each
        run = tmp_path / variant
        for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "checkpoint.pt", "eval.json"):
            assert (run / name).is_file(), f"{variant}/{name}"
        assert (run / "model" / "config.json").is_file()
    for row in results["main"]:
        assert 1.0 < row["valid ppl"] < 2 * 512 and math.isfinite(row["test ppl"])  # vocabulary of 512
        assert row["train tok/s"] > 0 and row["generate tok/s"] > 0
    sizes = {row["model"]: (row["active params"], row["total params"]) for row in results["main"]}
    assert sizes["moduleformer"][0] < sizes["moduleformer"][1] and sizes["dense_total"][0] == sizes["dense_total"][1]
    frozen, tuned = results["extendability"]
    assert frozen["A ppl before"] > 1 and tuned["B ppl after"] > 1
    assert json.loads((tmp_path / "results.json").read_text())["main"][0]["model"] == "moduleformer"
    assert "| moduleformer |" in (tmp_path / "results.md").read_text()


@pytest.mark.smoke
def test_bench_reports_positive_speeds(tmp_path: Path) -> None:
    result = bench.main(["--config", SMOKE, "--out", str(tmp_path)])
    assert (tmp_path / "bench.json").is_file()
    assert all(v > 0 for v in result["moe_layer_tok_s"].values())
    assert all(r["forward_tok_s"] > 0 and r["train_tok_s"] > 0 for r in result["model"].values())
    assert result["model_train_speedup_vs_dense_total"] > 0
