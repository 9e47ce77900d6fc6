"""CI's smoke run: the real entry points on configs/smoke.yaml, then what they wrote."""

import json
from pathlib import Path

import pytest
import torch

from papers.__NAME__ import reproduce, train
from shared.runs import RunDirError, latest_checkpoint

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.smoke
def test_reproduce_on_smoke_config(tmp_path: Path) -> None:
    metrics = reproduce.main(["--config", SMOKE, "--out", str(tmp_path)])
    assert 0.0 <= metrics["accuracy"] <= 1.0
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "metrics.json", "run.log", "results.md"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 20
    assert _steps(tmp_path) == list(range(20))


@pytest.mark.smoke
def test_resume_after_interruption_equals_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--config", SMOKE, "checkpoint_every=5"]
    train.main([*args, "--out", str(tmp_path / "whole")])

    class Interrupted(train.Run):
        def log(self, step: int, **metrics: float) -> None:
            if step == 12:
                raise KeyboardInterrupt  # as if the job were stopped after its step-10 checkpoint
            super().log(step, **metrics)

    monkeypatch.setattr(train, "Run", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.main([*args, "--out", str(tmp_path / "cut")])
    monkeypatch.undo()
    train.main([*args, "--out", str(tmp_path / "cut")])
    assert _steps(tmp_path / "cut") == list(range(20))  # resumed at step 10: nothing repeated or lost
    whole, cut = latest_checkpoint(tmp_path / "whole")["model"], latest_checkpoint(tmp_path / "cut")["model"]
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


@pytest.mark.smoke
def test_a_changed_config_is_refused(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path)])
    with pytest.raises(RunDirError, match="another config"):
        train.main(["--config", SMOKE, "--out", str(tmp_path), "lr=0.05"])
