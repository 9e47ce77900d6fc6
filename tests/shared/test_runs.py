from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from shared.runs import CheckpointError, Run, load_checkpoint, save_checkpoint


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
