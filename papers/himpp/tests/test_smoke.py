"""Smoke run of every entry point on configs/smoke.yaml (CI)."""

from __future__ import annotations

import json
import math

import pytest

from papers.himpp import bench, evaluate, reproduce, train

from .conftest import SMOKE


@pytest.mark.smoke
def test_entry_points(tmp_path) -> None:
    run = tmp_path / "train"
    metrics = train.main(["--config", str(SMOKE), "--out", str(run)])
    for name in ("config.yaml", "run_info.json", "metrics.json", "metrics.jsonl", "checkpoint.pkl", "loss.png"):
        assert (run / name).exists(), name
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and math.isfinite(metrics["train_loss_last"])
    assert 0.0 < metrics["train_loss_last"] < 1.5 and 0.0 < metrics["prior_loss"] <= math.log(2) + 1e-9
    for key in ("steps_per_s", "samples_per_s", "peak_gpu_memory_bytes", "first_loss", "final_loss"):  # gpu-check
        assert key in metrics, key
    assert 0.0 <= metrics["roc_auc_best_checkpoint"] <= 1.0 and len(metrics["checkpoint_aucs"]) == 2

    again = evaluate.main(["--config", str(SMOKE), "--out", str(run)])
    assert again["roc_auc"] == pytest.approx(metrics["roc_auc"])  # same checkpoint, same support draws
    assert (run / "eval" / "metrics.json").exists()

    out = tmp_path / "repro"
    reproduce.main(["--config", str(SMOKE), "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert set(results["table"]) == {"himpp", "protonet"}
    assert all(0.0 <= c["mean"] <= 1.0 for row in results["table"].values() for c in row.values())
    assert "| HiMPP |" in (out / "results.md").read_text() and (out / "roc_auc.png").exists()

    b = bench.main(["--config", str(SMOKE), "--out", str(tmp_path / "bench")])
    assert b["himpp/train_steps_per_s"] > 0 and b["protonet/test_episodes_per_s"] > 0
