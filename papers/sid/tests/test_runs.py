"""Run-level behaviour: resume after interruption, clear errors on bad configs and missing inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papers.sid import evaluate, reproduce, train
from papers.sid.config import Config
from shared.runs import CheckpointError, ConfigError, load_checkpoint, load_config

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
FAST = ["steps=4", "checkpoint_every=2", "eval_every=4", "pretrain_steps=10", "eval_samples=50"]


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "full"), *FAST])
    train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *FAST, "steps=2"])  # "interrupted" after 2
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 2
    train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *FAST])  # resumes at step 2
    full = load_checkpoint(tmp_path / "full" / "generator.pt")["model"]
    cut = load_checkpoint(tmp_path / "cut" / "generator.pt")["model"]
    assert all(torch.equal(full[k], cut[k]) for k in full)
    def loss_steps(run: str) -> list[int]:  # the shorter first attempt adds its own final eval row; losses must not repeat
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in rows if "loss_gen" in r]

    assert loss_steps("cut") == loss_steps("full") == [1, 2, 3, 4]


def test_bad_configs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(Config, SMOKE, ["alhpa=1.0"])
    with pytest.raises(ConfigError, match="needs conditional"):
        load_config(Config, SMOKE, ["guidance=cfg"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Config, SMOKE, ["guidance=super_cfg"])
    with pytest.raises(ConfigError, match="gen_steps"):
        load_config(Config, SMOKE, ["gen_steps=0"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Config, tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="unknown toy variant"):
        reproduce.main(["--config", SMOKE, "--out", str(tmp_path / "r"), "toy_variants=[nope]"])


def test_missing_inputs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no trained generator"):
        evaluate.main(["--config", SMOKE, "--out", str(tmp_path), "pretrain_steps=2"])
    with pytest.raises(ValueError, match="unknown 2-D mixture"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / "m"), "mixture=spiral"])
