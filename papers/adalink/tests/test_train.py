"""The training loop: gradient accumulation, resume, strict configs."""

import json
from pathlib import Path

import pytest
import torch

from papers.adalink import train
from papers.adalink.config import Config
from papers.adalink.data import encode, load_synthetic
from papers.adalink.methods import build
from papers.adalink.models import ByteTokenizer, tiny_llama
from shared.accel import setup_training
from shared.accel.training import TrainContext
from shared.runs import ConfigError, load_config

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


def _setup(seed: int = 0):
    model = build("adalink", tiny_llama(), adalink_rank=4)
    for p in model.adapters.parameters():  # a non-zero adapter, so gradients reach both matrices
        torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(seed))
    data = load_synthetic(40)
    enc = encode(ByteTokenizer(), data.spec, data.splits["train"], 24)
    label_ids = torch.tensor([ord("n"), ord("y")])
    return model, enc, lambda m, b: train.answer_loss(m, b, label_ids)


def test_two_micro_batches_give_the_update_of_one_double_batch() -> None:
    results = []
    for micro in (0, 4):
        model, enc, loss_fn = _setup()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        batch = train.draw_batch(enc, 8, seed=0, step=0)
        ctx = setup_training("cpu", "fp32", global_batch=8, micro_batch=micro)
        assert ctx.accum_steps == (2 if micro else 1)
        stats = ctx.train_step(model, opt, batch, loss_fn)
        results.append((stats["loss"], [p.detach().clone() for p in model.adapters.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_batches_are_a_function_of_seed_and_step() -> None:
    _, enc, _ = _setup()
    a, b = train.draw_batch(enc, 8, 3, 5), train.draw_batch(enc, 8, 3, 5)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.equal(a["input_ids"], train.draw_batch(enc, 8, 3, 6)["input_ids"])


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(out: str) -> dict:
        return train.main(["--config", SMOKE, "--out", str(tmp_path / out), "checkpoint_every=1", "eval_splits=[test]"])

    straight = run("a")
    real_step, calls = TrainContext.train_step, []

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third of three steps
        return real_step(*args, **kwargs)

    monkeypatch.setattr(TrainContext, "train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        run("b")
    monkeypatch.setattr(TrainContext, "train_step", real_step)
    resumed = run("b")
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-6)
    assert resumed["test_answer_loss"] == pytest.approx(straight["test_answer_loss"], rel=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]


def test_bad_configs_fail_with_the_valid_choices() -> None:
    with pytest.raises(ConfigError, match="method must be one of"):
        load_config(Config, SMOKE, ["method=bitfit"])
    with pytest.raises(ConfigError, match="micro_batch_size"):
        load_config(Config, SMOKE, ["micro_batch_size=3"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(Config, SMOKE, ["adalink_rnak=3"])
    with pytest.raises(ConfigError, match="lr_grid has no"):
        load_config(Config, SMOKE, ["methods=[adalink, lora_paper]"])
