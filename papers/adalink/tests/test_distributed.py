"""Two processes under torchrun (gloo, CPU) train like one process on the same global batch, and resume."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from papers.adalink import train
from shared.accel.testing import drop_newest_checkpoint, run_torchrun

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
ARGS = ["--config", SMOKE, "eval_splits=[test]", "micro_batch_size=0", "checkpoint_every=1"]
ADAPTER = Path("adapter") / "adalink_adapter.safetensors"


def _assert_same_run(one: Path, two: Path) -> None:
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m2["final_loss"] == pytest.approx(m1["final_loss"], rel=1e-5)  # float sums in another order
    a, b = load_file(str(one / ADAPTER)), load_file(str(two / ADAPTER))
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key
    rows = (two / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [0, 1, 2]  # rank 1 wrote nothing, no row twice


def test_two_processes_match_one_and_resume(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    train.main(["--out", str(one), *ARGS])
    run_torchrun("papers.adalink.train", ["--out", str(two), *ARGS])
    _assert_same_run(one, two)
    assert len(list((two / "tensorboard").glob("events.*"))) == 1
    step = drop_newest_checkpoint(two)  # as if both ranks were killed before the last checkpoint
    assert f"resuming from step {step}" in run_torchrun("papers.adalink.train", ["--out", str(two), *ARGS])
    _assert_same_run(one, two)
