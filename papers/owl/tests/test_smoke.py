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
                 "grid.png", "curve.png", "owl_layers.png", "owl_layer_report.json"):
        assert (tmp_path / name).exists(), name
    rows = results["rows"]
    # dense; grid M=3,5 (val; the chosen cell gains its test columns); wanda seed 0; wanda, owl_wanda seed 1;
    # topk tie-break x 2; curve at 2 windows x 2
    assert len(rows) == 1 + 2 + 1 + 2 + 2 + 2
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == len(rows) + 1  # + the chosen cell's test pass
    md = (tmp_path / "results.md").read_text()
    assert "| M \\ lambda | 0.08 |" in md and "whole-model sparsity" in md and "Verdict" in md
    for row in rows.values():
        for key, value in row.items():
            if key.startswith("ppl_"):
                assert math.isfinite(value) and 1.0 < value < 1000.0
    wanda = [r for r in rows.values() if r["method"] == "wanda" and r["tie_break"] == "stable" and r["n_calib"] == 4]
    assert {r["seed"] for r in wanda} == {0, 1}
    for r in wanda:
        assert r["overall_sparsity"] == pytest.approx(0.7, abs=0.02)
        assert r["model_sparsity"] < r["overall_sparsity"]  # the embeddings and head are never pruned
    owl = [r for r in rows.values() if r["method"] == "owl_wanda"]
    assert all(r["prune_seconds"] >= r["outlier_pass_seconds"] > 0 for r in owl)
    assert set(results["comparisons"]["owl_wanda"]) >= {"ratios", "band", "tie_effect", "verdict"}
    assert results["peak_rss_bytes"] > 10_000_000


@pytest.mark.smoke
def test_train_then_evaluate_owl_nm_on_opt(tmp_path: Path) -> None:
    """The official N:M command's setting (5:8, lambda 2, M 6): N must vary across blocks."""
    args = ["--config", SMOKE, "--out", str(tmp_path), "model=tiny_opt", 'sparsity_type="5:8"', "method=owl_wanda",
            "owl_lambda=2", "owl_m=6", "save_format=compressed"]
    metrics = train.main(args)
    report = json.loads((tmp_path / "layer_report.json").read_text())
    assert len(set(report["assigned_n"])) > 1 and sum(report["assigned_n"]) / 4 == pytest.approx(5, abs=0.5)
    assert len(report["outlier_ratios"]) == 4 and (tmp_path / "layer_report.png").is_file()
    assert not (tmp_path / "checkpoints").exists()
    assert metrics["saved_bytes"] > 0 and metrics["peak_rss_bytes"] > 0
    scores = evaluate.main(args)
    assert math.isfinite(scores["ppl_synthetic"]) and scores["overall_sparsity"] == pytest.approx(metrics["overall_sparsity"])


@pytest.mark.smoke
def test_bench_on_smoke_config(tmp_path: Path) -> None:
    result = bench.main(["--config", SMOKE, "--out", str(tmp_path)])
    assert (tmp_path / "bench.json").is_file()
    for pruner in ("magnitude", "wanda", "sparsegpt"):
        assert result[pruner]["seconds"] > 0 and result[pruner]["peak_rss_bytes"] >= result[pruner]["peak_rss_extra_bytes"] >= 0
    assert result["eval_tokens_per_s"] > 0
