"""CI's smoke run: the real entry points on configs/smoke.yaml, then what they wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from papers.meddiffusion import bench, evaluate, reproduce, train

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


@pytest.mark.smoke
def test_reproduce_on_smoke_config(tmp_path: Path) -> None:
    payload = reproduce.main(["--config", SMOKE, "--out", str(tmp_path)])
    for name in ("results.md", "results.json", "methods_pr_auc.png", "scarce_data_curve.png", "run_info.json",
                 "metrics.json"):  # run_info.json: what ci/publish_results.py checks before publishing
        assert (tmp_path / name).exists(), name
    assert {"MedDiffusion", "LSTM"} < set(payload["results"])  # plus the logistic-regression reference
    for stats in payload["results"].values():
        assert 0.0 < stats["pr_auc_mean"] <= 1.0 and 0.0 <= stats["f1_tuned_mean"] <= 1.0
        assert -1.0 <= stats["kappa_mean"] <= 1.0
    assert "0.7834" in (tmp_path / "results.md").read_text()  # the paper's cell sits beside ours
    run = tmp_path / "runs" / "meddiffusion" / "frac1" / "seed1"
    assert (run / "metrics.json").exists() and not (run / "checkpoints").exists()


@pytest.mark.smoke
def test_train_resume_evaluate_bench(tmp_path: Path) -> None:
    metrics = train.main(["--config", SMOKE, "--out", str(tmp_path), "epochs=2"])
    again = train.main(["--config", SMOKE, "--out", str(tmp_path), "epochs=2"])  # same config: the finished run
    assert again["test_pr_auc"] == metrics["test_pr_auc"]
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "checkpoints", "best_model.pt",
                 "predictions.csv"):
        assert (tmp_path / name).exists(), name
    steps = [json.loads(r)["step"] for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1] and metrics["epochs_run"] == 2
    assert all(math.isfinite(metrics[f"test_{m}"]) for m in ("pr_auc", "f1", "kappa"))
    assert 0.0 < metrics["test_pr_auc"] <= 1.0
    evaluated = evaluate.main(["--config", SMOKE, "--out", str(tmp_path), "epochs=2"])
    assert evaluated["test_pr_auc"] == pytest.approx(metrics["test_pr_auc"])
    result = bench.main(["--config", SMOKE, "--out", str(tmp_path / "bench")])
    assert result["meddiffusion_diffusion_overhead"] > 0 and result["lstm_inference_patients_per_s"] > 0
