"""CI's smoke run: the real entry points on configs/smoke.yaml (tiny random LLaMA, synthetic task)."""

import json
from pathlib import Path

import pytest

from papers.adalink import evaluate, reproduce, train

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


@pytest.mark.smoke
def test_reproduce_writes_the_table_with_every_method(tmp_path: Path) -> None:
    results = reproduce.main(["--config", SMOKE, "--out", str(tmp_path)])
    text = (tmp_path / "results.md").read_text()
    for method in ("zero_shot", "adalink", "lora", "prompt_tuning", "full_ft"):
        assert f"| {method} |" in text
        assert all(0.0 <= a <= 1.0 for a in results[method]["test_accuracy"])
    assert len(results["adalink"]["test_accuracy"]) == 2  # two seeds
    assert results["bench"]["adalink"]["trainable_params"] == 2 * 32 * 4
    assert results["bench"]["adalink"]["train_tokens_per_s"] > 0 and results["bench"]["adalink"]["peak_memory_bytes"] > 0
    assert set(results["comparisons"]) == {"lora", "prompt_tuning", "full_ft", "zero_shot"}
    assert json.loads((tmp_path / "results.json").read_text())["adalink"]["lr"] == 0.03


@pytest.mark.smoke
def test_evaluate_rebuilds_the_trained_adapter(tmp_path: Path) -> None:
    args = ["--config", SMOKE, "--out", str(tmp_path), "seeds=[0]"]
    trained = train.main(args)
    assert (tmp_path / "adapter" / "adalink_adapter.safetensors").is_file() and trained["saved_bytes"] < 5000
    scores = evaluate.main(args)
    assert scores["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    assert scores["validation_answer_loss"] == pytest.approx(trained["validation_answer_loss"], rel=1e-5)
