from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from shared.data import load
from shared.runs import (
    CheckpointError,
    Run,
    RunDirError,
    entrypoint,
    load_checkpoint,
    load_config,
    parse_run_args,
    save_checkpoint,
)


@dataclasses.dataclass
class Cfg:
    lr: float = 0.1


@pytest.mark.parametrize("suffix", [".pt", ".pkl"])
def test_checkpoint_round_trip(tmp_path: Path, suffix: str) -> None:
    state = {"step": 3, "weights": torch.arange(4.0) if suffix == ".pt" else np.arange(4.0)}
    path = save_checkpoint(tmp_path / f"ckpt{suffix}", state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and list(loaded["weights"]) == [0.0, 1.0, 2.0, 3.0]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_interrupted_save_keeps_last_complete_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def dies_halfway(obj: object, fh, *args: object, **kwargs: object) -> None:
        fh.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_damaged_and_missing_checkpoints_raise_one_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ckpt.pt", {"w": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_run_directory(tmp_path: Path) -> None:
    run = Run(tmp_path / "run", Cfg())
    run.log(0, loss=np.float32(2.5))
    run.log(1, loss=torch.tensor(1.5))
    final = run.finish({"ppl": np.float64(3.0)})
    assert final == {"ppl": 3.0}
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"lr": 0.1}
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert {"commit", "dirty", "packages", "argv", "python"} <= set(info) and "torch" in info["packages"]
    assert [r["loss"] for r in run.history()] == [2.5, 1.5]
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_a_folder_belongs_to_one_config(tmp_path: Path) -> None:
    Run(tmp_path / "run", Cfg()).log(0, loss=1.0)
    Run(tmp_path / "run", Cfg())  # the same config: reused (resume)
    with pytest.raises(RunDirError, match="a run of another config"):
        Run(tmp_path / "run", Cfg(lr=0.05))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("user file")
    with pytest.raises(RunDirError, match="not a run folder"):
        Run(tmp_path / "notes", Cfg())
    Run(tmp_path / "notes", Cfg(), overwrite=True)  # moved aside, never deleted
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("notes.replaced-")]
    assert len(aside) == 1 and (aside[0] / "mine.txt").read_text() == "user file"
    assert json.loads((tmp_path / "notes" / "run_info.json").read_text())["config_sha256"]


def test_restore_truncates_metrics_to_the_checkpoint(tmp_path: Path) -> None:
    run = Run(tmp_path, Cfg(), tensorboard=False)
    assert run.restore() is None
    for step in range(6):
        run.log(step, loss=float(step))
        if step == 2:
            run.save_checkpoint({"w": torch.ones(2)}, step + 1)
    again = Run(tmp_path, Cfg(), tensorboard=False)
    state = again.restore()
    assert state["step"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert [r["step"] for r in again.history()] == [0, 1, 2]
    assert "resuming from step 3" in (tmp_path / "run.log").read_text()


def test_a_fresh_attempt_without_checkpoint_does_not_duplicate_rows(tmp_path: Path) -> None:
    Run(tmp_path, Cfg(), tensorboard=False).log(0, loss=1.0)
    Run(tmp_path, Cfg(), tensorboard=False).log(0, loss=2.0)
    assert [r["loss"] for r in Run(tmp_path, Cfg(), tensorboard=False).history()] == [2.0]


def test_rolling_checkpoints_skip_a_damaged_newest(tmp_path: Path) -> None:
    run = Run(tmp_path, Cfg(), tensorboard=False, keep_checkpoints=2)
    for step in (1, 2, 3):
        run.save_checkpoint({"value": step}, step)
    assert [s for s, _ in run.checkpoints()] == [2, 3]
    newest = run.checkpoints()[-1][1]
    newest.write_bytes(newest.read_bytes()[:10])
    assert Run(tmp_path, Cfg(), tensorboard=False, keep_checkpoints=2).restore()["value"] == 2


def test_run_info_records_the_callers_repository(tmp_path: Path) -> None:
    other = tmp_path / "their_repo"
    other.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=other, check=True)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=other, check=True)
    script = other / "train.py"
    script.write_text("import dataclasses\nfrom shared.runs import Run\n"
                      "@dataclasses.dataclass\nclass C:\n    a: int = 1\n"
                      f"Run({str(tmp_path / 'out')!r}, C(), tensorboard=False)\n")
    subprocess.run([sys.executable, str(script)], cwd=other, check=True)
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=other, capture_output=True, text=True).stdout.strip()
    assert info["commit"] == head and info["dirty"] is True  # train.py is untracked there
    assert info["shared"]["repo"] != info["repo"]


def _entry(argv: list[str]) -> None:
    args = parse_run_args(argv, "test entry point")
    cfg = load_config(Cfg, args.config, args.overrides)
    Run(args.out, cfg, tensorboard=False)
    load("mnist", split="train")  # fails: MNIST_DIR points at an empty folder


def test_user_errors_exit_2_in_two_lines_and_leave_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.1\n")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert entrypoint(_entry, ["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 4 and "$MNIST_DIR=" in err[0] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()  # nothing half-written left behind
    assert entrypoint(_entry, ["--config", str(config), "--out", str(tmp_path / "o2"), "lr=fast"]) == 2
    assert "override 'lr=fast'" in capsys.readouterr().err
    monkeypatch.setenv("ML_PAPERS_DEBUG", "1")
    assert entrypoint(_entry, ["--config", str(config), "--out", str(tmp_path / "o3"), "lr=fast"]) == 2
    assert "Traceback" in capsys.readouterr().err
