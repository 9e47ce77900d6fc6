"""torchrun with 2 processes (gloo, CPU) against one process with the same global batch, resume under 2 processes,
and accumulation."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from papers.moduleformer import train
from shared.accel.testing import drop_newest_checkpoint, run_torchrun

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
# the MI loss is a statistic of the batch each forward sees (p(e) is its mean), so micro-batches and ranks change
# it; with its weight at 0 the split must not change anything
OVERRIDES = ["model.aux_loss_weight=0", "data=synthetic", "device=cpu", "precision=fp32", "steps=4", "checkpoint_every=2", "batch_size=4", "seeds=[0]"]


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def assert_same_run(a: Path, b: Path, tol: float) -> None:
    assert [s for s, _ in losses(a)] == [s for s, _ in losses(b)] == [0, 1, 2, 3]  # one row per step, no duplicates
    for (_, x), (_, y) in zip(losses(a), losses(b), strict=True):
        assert abs(x - y) <= tol * abs(y), (x, y)
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=tol, atol=tol, msg=key)


def test_two_processes_and_accumulation_equal_one_process(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "one"), *OVERRIDES])
    train.main(["--config", SMOKE, "--out", str(tmp_path / "accum"), *OVERRIDES, "micro_batch_size=2"])
    assert_same_run(tmp_path / "accum", tmp_path / "one", tol=1e-5)  # 2 micro-batches of 2 == one batch of 4
    args = ["--config", SMOKE, "--out", str(tmp_path / "two"), *OVERRIDES]
    run_torchrun("papers.moduleformer.train", args)
    assert_same_run(tmp_path / "two", tmp_path / "one", tol=1e-5)  # 2 ranks x 2 rows == one batch of 4
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2
    assert len(list((tmp_path / "two").rglob("events.out.tfevents*"))) == 1  # one run in the folder
    step = drop_newest_checkpoint(tmp_path / "two")  # as if both ranks were killed before the last checkpoint
    assert f"resuming from step {step}" in run_torchrun("papers.moduleformer.train", args)
    assert_same_run(tmp_path / "two", tmp_path / "one", tol=1e-5)
