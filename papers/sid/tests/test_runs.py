"""Run-level behaviour: resume after interruption, clear errors on bad configs and missing inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papers.sid import evaluate, reproduce, train
from papers.sid.config import Config
from papers.sid.sid import SiDTrainer
from papers.sid.task import Task
from shared.runs import CheckpointError, ConfigError, load_checkpoint, load_config

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
FAST = ["steps=4", "checkpoint_every=2", "eval_every=4", "pretrain_steps=10", "eval_samples=50"]


def test_resume_matches_an_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "full"), *FAST])
    original = SiDTrainer.round

    def interrupted(self: SiDTrainer, gen: torch.Generator, images_seen: int) -> dict:
        if images_seen >= 2 * self.cfg.batch_size:  # the third round never finishes
            raise KeyboardInterrupt
        return original(self, gen, images_seen)

    monkeypatch.setattr(SiDTrainer, "round", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *FAST])
    monkeypatch.setattr(SiDTrainer, "round", original)
    assert [c.name for c in (tmp_path / "cut" / "checkpoints").glob("*.pt")] == ["step_00000002.pt"]
    train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *FAST])  # resumes at step 2
    full = load_checkpoint(tmp_path / "full" / "generator.pt")["model"]
    cut = load_checkpoint(tmp_path / "cut" / "generator.pt")["model"]
    assert all(torch.equal(full[k], cut[k]) for k in full)
    def loss_steps(run: str) -> list[int]:  # losses logged before the interruption must not repeat
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in rows if "loss_gen" in r]

    assert loss_steps("cut") == loss_steps("full") == [0, 1, 2, 3]


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


def test_image_teacher_samples_are_cached_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SiD variants of one image teacher share one Heun draw, keyed by the teacher's CFG scale."""
    monkeypatch.setattr(evaluate, "teacher_path", lambda cfg, out: tmp_path / "teacher-x.pt")
    task = Task(torch.nn.Identity(), torch.nn.Identity(), 10, (1, 28, 28), torch.zeros(1), torch.zeros(1))
    cfg = Config(task="image", conditional=True, eval_samples=12)
    calls: list[int] = []

    def sampler(z: torch.Tensor, y: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
        calls.append(len(z))
        return z + y.reshape(-1, 1, 1, 1)

    first = evaluate.teacher_draw(cfg, task, tmp_path, sampler)
    again = evaluate.teacher_draw(Config(task="image", conditional=True, eval_samples=12, guidance="zero_cfg"), task,
                                  tmp_path, sampler)  # the same teacher sampler (no CFG): read back, not redrawn
    assert calls == [12] and torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]
    guided_cfg = Config(task="image", conditional=True, eval_samples=12, guidance="cfg", teacher_cfg=1.5)
    evaluate.teacher_draw(guided_cfg, task, tmp_path, sampler)  # a CFG teacher is another sampler: drawn
    assert calls == [12, 12] and len(list(tmp_path.glob("teacher-x-heun18-cfg*-n12-seed1.pt"))) == 2


def test_reproduce_runs_conditional_image_variants(tmp_path: Path) -> None:
    image = str(Path(SMOKE).with_name("smoke_image.yaml"))
    reproduce.main(["--config", image, "--out", str(tmp_path), "image_variants=[cond,anti_cfg]", "eval_samples=30"])
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["variant"], r["nfe"]) for r in rows] == [(v, n) for v in ("fashion_mnist cond", "fashion_mnist anti_cfg")
                                                        for n in (1, 1, 3)]  # SiD EMA, SiD raw, teacher
    assert all(0 <= r["class_accuracy"] <= 1 and r["within_class_diversity"] > 0 for r in rows)
    assert (tmp_path / "image" / "cond" / "samples.png").is_file() and (tmp_path / "image" / "anti_cfg").is_dir()
    with pytest.raises(ValueError, match="unknown image variant"):
        reproduce.main(["--config", image, "--out", str(tmp_path / "bad"), "image_variants=[nope]"])
