"""Gradient accumulation and two torchrun processes (CPU, gloo) follow one process on the same global batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from papers.meddiffusion import train
from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import fit, prepare
from papers.meddiffusion.tests.toy import toy_cohort
from shared.accel.testing import drop_newest_checkpoint, run_torchrun
from shared.runs import latest_checkpoint

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
TOL = 1e-5  # float32 sums in another order (micro-batches, rank shards, gradient all-reduce) differ by rounding only
# denoiser_channels 16 (two channels per GroupNorm group): with one channel per group a conv bias has no effect,
# its gradient is rounding noise and Adam turns that noise into +-lr steps, so weights could not be compared.
TINY = dict(max_visits=6, max_codes=4, embed_dim=8, hidden_dim=8, denoiser_channels=16, diffusion_steps=50,
            batch_size=32, epochs=2, patience=10, threads=1, bootstrap_resamples=20, dropout=0.0)
LOSSES = ("train_loss", "train_ce_real", "train_ce_synthetic", "train_mse_noise")


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_training(a: Path, b: Path) -> None:
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] and len(ra) > 0
    for x, y in zip(ra, rb):
        assert set(x) == set(y)
        for key in LOSSES:
            assert x[key] == pytest.approx(y[key], rel=TOL, abs=TOL), key
    wa, wb = latest_checkpoint(a)["model"], latest_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=TOL, atol=TOL, msg=name)


def test_two_micro_batches_equal_one_whole_batch(tmp_path: Path) -> None:
    cfg = Config(**TINY)
    prepared = prepare(cfg, toy_cohort(160))
    whole = fit(cfg, prepared, tmp_path / "whole", tensorboard=False, progress=False)
    halves = fit(Config(**TINY, micro_batch_size=16), prepared, tmp_path / "halves", tensorboard=False,
                 progress=False)
    _assert_same_training(tmp_path / "whole", tmp_path / "halves")
    assert whole["first_loss"] == pytest.approx(halves["first_loss"], rel=TOL)
    assert whole["steps_per_s"] > 0 and whole["peak_gpu_memory_bytes"] == 0


def test_two_processes_follow_one_process(tmp_path: Path) -> None:
    overrides = ["epochs=2", "train_fraction=0.25", "dropout=0.0", "bootstrap_resamples=20",
                 "denoiser_channels=16"]
    one = train.main(["--config", SMOKE, "--out", str(tmp_path / "one"), *overrides])
    two = tmp_path / "two"
    kit = {"ML_PAPERS_KIT": os.environ["ML_PAPERS_KIT"]} if "ML_PAPERS_KIT" in os.environ else {}  # offline data
    args = ["--config", SMOKE, "--out", str(two), *overrides]

    def assert_same_as_one() -> None:
        _assert_same_training(tmp_path / "one", two)
        metrics = json.loads((two / "metrics.json").read_text())
        assert metrics["world_size"] == 2 and one["world_size"] == 1
        assert metrics["test_pr_auc"] == pytest.approx(one["test_pr_auc"], abs=1e-4)
        assert (two / "best_model.pt").exists() and (two / "predictions.csv").exists()

    run_torchrun("papers.meddiffusion.train", args, **kit)
    assert_same_as_one()
    assert len(list(two.rglob("events.out.tfevents*"))) == 1
    epoch = drop_newest_checkpoint(two)  # as if both ranks were killed before the last epoch's checkpoint
    assert f"resuming from step {epoch}" in run_torchrun("papers.meddiffusion.train", args, **kit)
    assert_same_as_one()

