"""Training through shared.accel: micro-batches and two torchrun processes (CPU, gloo) follow one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papers.sid import train
from shared.accel.testing import drop_newest_checkpoint, run_torchrun
from shared.runs import load_checkpoint

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
TINY = ["steps=4", "pretrain_steps=10", "checkpoint_every=2", "eval_every=4", "eval_samples=50"]
# every batch key: few-step re-noising, labels and their dropout (anti_cfg), real data for the discriminator (gan)
ALL_KEYS = ["gen_steps=2", "conditional=true", "guidance=anti_cfg", "anti_cfg=-0.3", "gan=true"]
# float32 sums in another order (rank shards, micro-batches) differ by rounding only; Adam with beta1 = 0 turns a
# gradient into about lr * sign(g) in its first step, so weights get an absolute tolerance of lr / 10 (lr = 1e-4);
# measured: 6e-8 for two micro-batches
LOSS_TOL, WEIGHT_TOL = 1e-4, 1e-5


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = _rows(a), _rows(b)
    assert [sorted(r) for r in ra] == [sorted(r) for r in rb] and [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=LOSS_TOL, abs=LOSS_TOL), key
    for name in ("generator.pt", "generator_raw.pt"):
        wa, wb = load_checkpoint(a / name)["model"], load_checkpoint(b / name)["model"]
        assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=WEIGHT_TOL) for k in wa), name


def test_two_micro_batches_equal_one_batch(tmp_path: Path) -> None:
    """batch 64 as 2 micro-batches of 32 (pretraining's 128 as 4) == the whole batch, every batch key sliced."""
    for name, extra in (("whole", []), ("micro", ["micro_batch_size=32"])):
        train.main(["--config", SMOKE, "--out", str(tmp_path / name), *TINY, *ALL_KEYS, *extra])
    _assert_same_run(tmp_path / "whole", tmp_path / "micro")
    a = load_checkpoint(tmp_path / "whole" / "generator_raw.pt")["model"]
    b = load_checkpoint(tmp_path / "micro" / "generator_raw.pt")["model"]
    assert not all(torch.equal(a[k], b[k]) for k in a)  # two real code paths, not one run read twice


def test_two_processes_equal_one_and_resume(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "one"), *TINY])
    args = ["--config", SMOKE, "--out", str(tmp_path / "two"), *TINY]
    run_torchrun("papers.sid.train", args)
    _assert_same_run(tmp_path / "one", tmp_path / "two")  # no duplicate rows: rank 0 alone writes
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2
    step = drop_newest_checkpoint(tmp_path / "two")  # as if both ranks were killed before the last checkpoint
    assert f"resuming from step {step}" in run_torchrun("papers.sid.train", args)
    _assert_same_run(tmp_path / "one", tmp_path / "two")
