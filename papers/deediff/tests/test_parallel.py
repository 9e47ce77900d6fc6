"""Gradient accumulation and torchrun (CPU, gloo) follow the 1-process, whole-batch run of both training stages.

The U-ViT has no dropout, so equal inputs give equal losses. L_UAL's layer weights are batch means of the
certainties (Sec. 3.3), computed per micro-batch and per process (as in the official multi-GPU code), so they
differ from the whole batch's; these tests set layerwise_weight=0, which leaves a loss (L_simple + L_u) that is
a plain mean over samples and so must match exactly up to float32 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papers.deediff import train
from shared.accel.testing import drop_newest_checkpoint, run_torchrun
from shared.runs import load_checkpoint

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
TINY = ["device=cpu", "precision=fp32", "baseline_steps=3", "finetune_steps=2", "checkpoint_every=2",
        "layerwise_weight=0"]
TOL = 1e-5  # float32 sums over other row splits (micro-batches, ranks) differ by rounding, ~1e-7 here


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert [(r["step"], r["stage"]) for r in ra] == [(r["step"], r["stage"]) for r in rb]
    assert [r["step"] for r in ra] == list(range(5))  # smoke logs every step; no row twice
    for x, y in zip(ra, rb):
        for key in ("loss", "simple", "uem", "mean_certainty"):
            if key in x:
                assert x[key] == pytest.approx(y[key], rel=TOL, abs=TOL), (x["step"], key)
    for name in ("baseline", "deediff"):
        wa = load_checkpoint(a / "weights" / f"{name}.pt")["model"]
        wb = load_checkpoint(b / "weights" / f"{name}.pt")["model"]
        assert wa.keys() == wb.keys()
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], rtol=TOL, atol=TOL, msg=f"{name}: {key}")


def test_two_micro_batches_equal_the_whole_batch(tmp_path: Path) -> None:
    whole = train.main(["--config", SMOKE, "--out", str(tmp_path / "whole"), *TINY])
    half = train.main(["--config", SMOKE, "--out", str(tmp_path / "half"), *TINY, "micro_batch_size=8"])
    assert_same_run(tmp_path / "whole", tmp_path / "half")
    assert whole["world_size"] == half["world_size"] == 1
    assert whole["peak_gpu_memory_bytes"] == 0 and whole["steps_per_s"] > 0 and whole["images_per_s"] > 0


def test_torchrun_two_processes_equal_one_and_resume(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "one"), *TINY])
    args = ["--config", SMOKE, "--out", str(tmp_path / "two"), *TINY]
    run_torchrun("papers.deediff.train", args)
    assert_same_run(tmp_path / "one", tmp_path / "two")
    two = tmp_path / "two"
    assert json.loads((two / "metrics.json").read_text())["world_size"] == 2
    assert len(list((two / "tensorboard").iterdir())) == 1  # one writer: rank 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # one run folder, nothing moved aside
    # rank 0 alone scored the fine-tuned model and wrote its snapshot (smoke.yaml validates every 2 steps)
    assert sorted(p.name for p in (two / "weights").iterdir()) == ["baseline.pt", "deediff-step2.pt", "deediff.pt"]
    step = drop_newest_checkpoint(two)  # as if both ranks were killed during the fine-tuning stage
    assert f"resuming from step {step}" in run_torchrun("papers.deediff.train", args)
    assert_same_run(tmp_path / "one", two)
