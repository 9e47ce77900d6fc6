"""CI's smoke run: the real entry points on configs/smoke.yaml, then what they wrote."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from papers.deediff import bench, evaluate, reproduce

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("deediff_smoke")
    return out, reproduce.main(["--config", SMOKE, "--out", str(out)])


@pytest.mark.smoke
def test_reproduce_writes_results(run_dir: tuple[Path, dict]) -> None:
    out, metrics = run_dir
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "eval.json", "results.md",
                 "results.json", "fid_vs_compute.png", "exit_depth_vs_timestep.png", "exit_error_per_layer.png",
                 "samples.png", "weights/baseline.pt", "weights/deediff.pt", "checkpoints"):
        assert (out / name).exists(), name
    assert all(math.isfinite(v) for v in metrics.values())
    result = json.loads((out / "results.json").read_text())
    names = [r["config"] for r in result["rows"]]
    assert names[:4] == ["baseline full", "deediff full", "deediff exit 0.5", "deediff exit 0.7"]
    for row in result["rows"]:
        assert 0 < row["layer_fraction"] <= 1 and row["fid"] > 0 and 0 <= row["class_accuracy"] <= 1
        assert len(row["depth_by_step"]) == len(row["t_by_step"]) == row["sample_steps"] <= 3
    full = next(r for r in result["rows"] if r["config"] == "deediff full")
    assert full["flops_fraction"] == 1.0 and full["layer_fraction"] == 1.0
    assert "smallcnn-fashion_mnist" in result["feature_net"]
    assert "FID" in (out / "results.md").read_text() and "3.11" in (out / "results.md").read_text()
    # a 6-step baseline does not generate: the quality gate withholds the claims table and says why
    assert "claims table is withheld" in (out / "results.md").read_text() and "< 0.5" in result["claims_withheld"]
    assert {"deediff schedule 0.5", "deediff schedule 0.7"} <= set(names)
    assert any(n.startswith("baseline ddim ") and n.endswith(" steps") for n in names)  # fewer steps, less compute
    for row in result["rows"]:
        assert row["fid_ci"][0] <= row["fid_ci"][1]
    assert {(c["a"], c["b"]) for c in result["comparisons"]} >= {("deediff full", "baseline full"),
                                                                 ("deediff exit 0.5", "deediff schedule 0.5")}
    assert (out / "finetune_validation.png").exists() and "checkpoint selection" in (out / "results.md").read_text()
    train_metrics = json.loads((out / "metrics.json").read_text())
    assert [r["stage_step"] for r in train_metrics["finetune_validation"]] == [2, 4]
    assert train_metrics["finetune_selected_step"] in (2, 4)
    assert train_metrics["steps"] == 10 and math.isfinite(train_metrics["final_loss"])
    for key in ("steps_per_s", "images_per_s", "first_loss"):  # what make gpu-check reads
        assert math.isfinite(train_metrics[key]) and train_metrics[key] > 0
    assert train_metrics["peak_gpu_memory_bytes"] == 0  # CPU


@pytest.mark.smoke
def test_evaluate_is_deterministic(run_dir: tuple[Path, dict]) -> None:
    out, _ = run_dir
    first = json.loads((out / "eval.json").read_text())
    again = evaluate.main(["--config", SMOKE, "--out", str(out)])
    assert [r["fid"] for r in again["rows"]] == [r["fid"] for r in first["rows"]]
    assert [r["layer_fraction"] for r in again["rows"]] == [r["layer_fraction"] for r in first["rows"]]


@pytest.mark.smoke
def test_bench_reports_ratios(run_dir: tuple[Path, dict]) -> None:
    out, _ = run_dir
    result = bench.main(["--config", SMOKE, "--out", str(out), "bench_repeats=1"])
    assert set(result["batches"]) == {"1", "8"}
    for entry in result["batches"].values():
        assert entry["speedup"] > 0 and all(r > 0 for r in entry["images_per_s"].values())
    assert (out / "bench.json").exists()


def test_diagnose_reports_mse_beside_the_gaussian_predictor(tmp_path: Path) -> None:
    from papers.deediff import diagnose

    result = diagnose.main(["--config", SMOKE, "--out", str(tmp_path), "seconds=0.5", "sample_steps=2"])
    assert result["steps"] >= 1 and set(result["gaussian_mse"]) == set(result["ema_mse"]) == {
        "t0.02", "t0.05", "t0.1", "t0.2", "t0.3", "t0.5"}
    # the Gaussian predictor's error falls as t grows (x_t tends to pure noise, which it predicts exactly)
    gauss = list(result["gaussian_mse"].values())
    assert all(a > b for a, b in itertools.pairwise(gauss)) and gauss[-1] < 0.1
    assert 0 <= result["class_accuracy"] <= 1 and result["fid_200_samples"] > 0
    assert (tmp_path / "diagnose.json").exists() and (tmp_path / "samples.png").exists()
