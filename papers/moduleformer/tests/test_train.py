"""Training loop, configs and expert surgery on synthetic token streams: determinism, resume, frozen experts."""

import dataclasses
from pathlib import Path

import pytest
import torch

from papers.moduleformer import evaluate, train
from papers.moduleformer.config import Config, ModelConfig, model_config
from papers.moduleformer.data import random_windows
from papers.moduleformer.modeling import ModuleFormerForCausalLM
from papers.moduleformer.surgery import add_experts, expert_usage, moe_layers, prune_experts
from shared.accel import setup_training
from shared.runs import ConfigError, Run, UserError, load_config

SMOKE = Path(__file__).parents[1] / "configs" / "smoke.yaml"
MODEL = ModelConfig(n_embd=16, n_layer=2, n_head=2, att_hidden=16, n_att_experts=4, k_att=2, ffd_hidden=16,
                    n_mlp_experts=4, k_mlp=2, gating_size=8)


CTX = setup_training("cpu", "fp32", global_batch=3)


def make_run(tmp_path: Path, **overrides: object) -> tuple[Config, ModuleFormerForCausalLM, torch.Tensor, Run]:
    cfg = Config(model=MODEL, seq_len=12, batch_size=3, steps=6, warmup_steps=1, checkpoint_every=2, **overrides)
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(model_config(cfg, vocab_size=29, eos_id=0))
    stream = torch.randint(0, 29, (500,), generator=torch.Generator().manual_seed(1))
    return cfg, model, stream, Run(tmp_path, cfg, tensorboard=False)


def test_training_is_deterministic_and_lowers_the_loss(tmp_path: Path) -> None:
    states, losses = [], []
    for name in ("a", "b"):
        cfg, model, stream, run = make_run(tmp_path / name, lr=0.01)
        stats = train.train_steps(model, stream, cfg, run, CTX)
        states.append(model.state_dict())
        losses.append([row["loss"] for row in run.history()])
        assert stats["train_tokens_per_s"] > 0
    assert losses[0] == losses[1]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert losses[0][-1] < losses[0][0]


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg, model, stream, run = make_run(tmp_path / "full")
    train.train_steps(model, stream, cfg, run, CTX)
    reference = model.state_dict()

    cfg, model, stream, run = make_run(tmp_path / "cut")
    log = run.log

    def crash_at_step_4(step: int, **metrics: float) -> None:
        if step == 4:
            raise KeyboardInterrupt
        log(step, **metrics)

    run.log = crash_at_step_4
    with pytest.raises(KeyboardInterrupt):
        train.train_steps(model, stream, cfg, run, CTX)
    cfg, fresh, stream, run = make_run(tmp_path / "cut")  # a new process: new weights, resumed from step 4
    stats = train.train_steps(fresh, stream, cfg, run, CTX)
    for key, value in reference.items():
        torch.testing.assert_close(fresh.state_dict()[key], value, msg=key)
    assert stats["train_tokens_per_s"] > 0


def test_dense_baselines_have_the_intended_sizes() -> None:
    cfg = Config(model=MODEL)
    sizes = {}
    for variant in ("moduleformer", "dense_active", "dense_total"):
        model = ModuleFormerForCausalLM(model_config(dataclasses.replace(cfg, variant=variant), 29, 0))
        sizes[variant] = (train.active_parameters(model), sum(p.numel() for p in model.parameters()))
    gates = sum(p.numel() for n, p in ModuleFormerForCausalLM(model_config(cfg, 29, 0)).named_parameters() if ".gate." in n)
    assert sizes["dense_total"][1] == sizes["moduleformer"][1] - gates  # same experts, no gates
    assert sizes["dense_active"][0] == sizes["moduleformer"][0] - gates  # k experts per token, no gates
    assert sizes["dense_total"][0] == sizes["dense_total"][1]


def test_new_experts_train_while_old_ones_stay_frozen(tmp_path: Path) -> None:
    cfg, model, stream, run = make_run(tmp_path)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    params = add_experts(model, 2)
    assert model.config.mlp_experts_per_layer == [6, 6] and model.config.att_experts_per_layer == [6, 6]
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    train.train_steps(model, stream, cfg, run, CTX, params=params, steps=3)
    new = model.state_dict()
    for key, value in old.items():
        rows = len(value)
        torch.testing.assert_close(new[key][:rows], value, msg=key)  # every old weight is untouched
    assert any(not torch.equal(new[k], fresh[k]) for k in new if "experts" in k)  # the new experts moved


def test_usage_shares_and_pruning(tmp_path: Path) -> None:
    _, model, stream, _ = make_run(tmp_path)
    windows = random_windows(stream, 4, 12, torch.Generator().manual_seed(0))
    usage = expert_usage(model, windows)
    assert set(usage) == set(moe_layers(model)) and all(u.sum().item() == pytest.approx(1.0) for u in usage.values())
    kept = prune_experts(model, usage, min_share=10.0)  # a share above 10/E never happens: keep only the top k
    assert all(n == 2 for n in kept.values())
    assert all(m.experts.weight.shape[0] == 2 for m in moe_layers(model).values())
    assert torch.isfinite(model(windows).logits).all()


def test_bad_configs_fail_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(Config, SMOKE, ["no_such_key=1"])
    with pytest.raises(ValueError, match="steps"):
        load_config(Config, SMOKE, ["steps=0"])
    with pytest.raises(ValueError, match="shorter than one window"):
        random_windows(torch.arange(10), 2, 16, torch.Generator())


def test_evaluate_without_a_trained_model_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train"):
        evaluate.main(["--config", str(SMOKE), "--out", str(tmp_path)])


def test_expert_surgery_refuses_a_dense_model() -> None:
    dense = ModuleFormerForCausalLM(model_config(Config(model=MODEL, variant="dense_total"), 29, 0))
    with pytest.raises(ValueError, match="dense"):
        add_experts(dense, 1)
