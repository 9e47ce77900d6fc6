"""Two processes under torchrun (gloo, CPU) train like one process on the same global batch."""

import json
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from shared.accel.testing import torchrun_cmd, torchrun_env

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
ARGS = ["--config", SMOKE, "eval_splits=[test]", "micro_batch_size=0"]


def _run(out: Path, nproc: int) -> dict:
    cmd = torchrun_cmd("papers.adalink.train", ["--out", str(out), *ARGS], nproc=nproc)
    subprocess.run(cmd, env=torchrun_env(), check=True, capture_output=True, timeout=300)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    one, two = _run(tmp_path / "one", 1), _run(tmp_path / "two", 2)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-5)  # float sums in another order
    a = load_file(str(tmp_path / "one" / "adapter" / "adalink_adapter.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter" / "adalink_adapter.safetensors"))
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key
    rows = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [0, 1, 2]  # rank 1 wrote nothing
    assert len(list((tmp_path / "two" / "tensorboard").glob("events.*"))) == 1
