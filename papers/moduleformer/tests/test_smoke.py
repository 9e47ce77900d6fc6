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
        for run in (tmp_path / "sweep" / variant / "lr0.001", tmp_path / variant / "seed1"):  # seed 0, then seed 1
            for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "eval.json", "checkpoints"):
                assert (run / name).exists(), f"{run}/{name}"
            assert (run / "model" / "config.json").is_file()
        for seed_run in results["runs"][variant]["seeds"].values():
            assert 1.0 < seed_run["validation_ppl"] < 2 * 512 and math.isfinite(seed_run["test_ppl_austen"])  # vocabulary 512
    sizes = {row["model"]: (row["active params"], row["total params"]) for row in results["main"]}
    assert sizes["moduleformer"][0] < sizes["moduleformer"][1] and sizes["dense_total"][0] == sizes["dense_total"][1]
    assert set(results["verdicts"]) == {"dense_active", "dense_total"}  # a tiny smoke model: verdicts are withheld
    assert all(v["verdict"].startswith("withheld") for v in results["verdicts"].values())
    assert len(results["extend_raw"]["moduleformer"]) == 2 and len(results["specialisation_raw"]) == 2
    assert json.loads((tmp_path / "results.json").read_text())["main"][0]["model"] == "moduleformer"
    assert "| moduleformer |" in (tmp_path / "results.md").read_text()


@pytest.mark.smoke
def test_bench_reports_positive_speeds(tmp_path: Path) -> None:
    result = bench.main(["--config", SMOKE, "--out", str(tmp_path)])
    assert (tmp_path / "bench.json").is_file()
    assert all(v["min"] <= v["median"] <= v["max"] for v in result["moe_layer_inference_tok_s"].values())
    assert all(r[kind]["median"] > 0 for r in result["model"].values() for kind in ("inference", "training"))
    assert set(result["experts_fwd_bwd_ms_vs_E"]) == {"E=8", "E=32", "E=64"} and result["experts_E64_over_E8"] > 0
