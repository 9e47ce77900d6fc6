"""The training context: accumulation and several processes follow one process; runs survive SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.accel import setup_training
from shared.accel.testing import torchrun_cmd, torchrun_env
from shared.runs import UserError, latest_checkpoint
from tests.shared import tiny_train

TOL = 1e-6  # float32 sums in another order (rank shards, micro-batches) differ by rounding only


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text("seed: 3\nsteps: 8\nbatch_size: 8\n")
    return str(path)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return latest_checkpoint(run_dir)["model"]


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(8))
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], rel=TOL, abs=TOL)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.allclose(wa[k], wb[k], rtol=TOL, atol=TOL) for k in wa)


def _torchrun(config: str, out: Path, *overrides: str, **env: str) -> subprocess.CompletedProcess:
    cmd = torchrun_cmd("tests.shared.tiny_train", ["--config", config, "--out", str(out), *overrides])
    return subprocess.run(cmd, env=torchrun_env(**env), capture_output=True, text=True, timeout=240)


def test_two_micro_batches_equal_one_double_batch(config: str, tmp_path: Path) -> None:
    tiny_train.main(["--config", config, "--out", str(tmp_path / "one")])
    tiny_train.main(["--config", config, "--out", str(tmp_path / "accum"), "micro_batch_size=4"])
    _assert_same_run(tmp_path / "one", tmp_path / "accum")
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["world_size"] == 1


def test_train_step_returns_global_means() -> None:
    ctx = setup_training("cpu", "fp32", global_batch=6, micro_batch=4)
    assert ctx.accum_steps == 2
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    x = torch.arange(6.0).unsqueeze(1)
    stats = ctx.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), (x, x),
                           lambda net, b: (net(b[0]) - b[1]).pow(2).mean())
    assert stats["loss"] == pytest.approx(float((x**2).mean()))  # 55/6: unequal micro-batches weighed by rows


def test_bad_training_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="micro_batch_size 16 exceeds"):
        setup_training("cpu", global_batch=8, micro_batch=16)
    with pytest.raises(UserError, match="'fsdp' shards over GPUs"):
        setup_training("cpu", global_batch=8, strategy="fsdp")
    with pytest.raises(UserError, match="precision 'fp8'"):
        setup_training("cpu", "fp8", global_batch=8)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            setup_training("cuda", global_batch=8)


def test_bf16_autocast_on_cpu_trains(config: str, tmp_path: Path) -> None:
    result = tiny_train.main(["--config", config, "--out", str(tmp_path / "run"), "precision=bf16"])
    assert torch.isfinite(torch.tensor(result["final_loss"]))


def test_sigkill_then_resume_equals_an_uninterrupted_run(config: str, tmp_path: Path) -> None:
    tiny_train.main(["--config", config, "--out", str(tmp_path / "whole")])
    cmd = ["-m", "tests.shared.tiny_train", "--config", config, "--out", str(tmp_path / "cut")]
    killed = subprocess.run([sys.executable, *cmd], env=torchrun_env(TINY_KILL_AT_STEP="5"),
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9  # SIGKILL after the step-4 checkpoint, with step 4's row already logged
    assert [r["step"] for r in _rows(tmp_path / "cut")] == [0, 1, 2, 3, 4]
    resumed = subprocess.run([sys.executable, *cmd], env=torchrun_env(), capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 4" in resumed.stderr
    _assert_same_run(tmp_path / "whole", tmp_path / "cut")  # steps strictly increasing, weights equal
    kept = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert kept == ["step_00000006.pt", "step_00000008.pt"]  # keep_checkpoints=2
    assert all((p.stat().st_mode & 0o044) == 0o044 for p in (tmp_path / "cut" / "checkpoints").iterdir())


def test_two_processes_equal_one_bare_module_all_reduce(config: str, tmp_path: Path) -> None:
    tiny_train.main(["--config", config, "--out", str(tmp_path / "one")])
    proc = _torchrun(config, tmp_path / "two", "wrap=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_run(tmp_path / "one", tmp_path / "two")
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1  # one writer: rank 0
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2


def test_ddp_killed_and_resumed_under_two_processes_equals_one(config: str, tmp_path: Path) -> None:
    tiny_train.main(["--config", config, "--out", str(tmp_path / "one")])
    cut = _torchrun(config, tmp_path / "two", TINY_KILL_AT_STEP="3")
    assert cut.returncode != 0
    resumed = _torchrun(config, tmp_path / "two")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step 2" in resumed.stderr
    _assert_same_run(tmp_path / "one", tmp_path / "two")


def test_single_process_entry_point_refuses_torchrun(config: str, tmp_path: Path) -> None:
    script = tmp_path / "evaluate.py"
    script.write_text(
        "from shared.runs import entrypoint, parse_run_args\n"
        "def main(argv):\n    parse_run_args(argv, 'an evaluation')\n"
        "raise SystemExit(entrypoint(main))\n"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "--config", config, "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "runs in one process, but WORLD_SIZE=2" in proc.stderr
    assert not (tmp_path / "out").exists()
