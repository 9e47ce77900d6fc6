"""CI's smoke run: the real entry points on configs/smoke.yaml, then what they wrote."""

import json
from pathlib import Path

import pytest

from papers.adalink import reproduce, train

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


@pytest.mark.smoke
def test_reproduce_on_smoke_config(tmp_path: Path) -> None:
    metrics = reproduce.main(["--config", SMOKE, "--out", str(tmp_path)])
    assert 0.0 <= metrics["accuracy"] <= 1.0
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "checkpoint.pt", "results.md"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20


@pytest.mark.smoke
def test_resume_continues_from_checkpoint(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path), "steps=10", "checkpoint_every=5"])
    train.main(["--config", SMOKE, "--out", str(tmp_path), "steps=20", "checkpoint_every=5"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(20))  # the second call picked up at step 10, nothing repeated or lost
