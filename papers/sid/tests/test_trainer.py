"""SiD training mechanics: what each update may touch, gradient paths, shapes, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from papers.sid import sid, train
from papers.sid.config import Config
from papers.sid.nets import SmallUNet
from papers.sid.sid import SiDTrainer, generate
from papers.sid.task import make_network
from shared.runs import load_checkpoint

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def _trainer(**overrides: object) -> SiDTrainer:
    cfg = Config(width=16, batch_size=8, **overrides)
    torch.manual_seed(0)
    num_classes = 3 if cfg.conditional else 0
    teacher = make_network(cfg, num_classes)  # a learnable teacher, so "frozen" has parameters to check
    return SiDTrainer(cfg, teacher, make_network(cfg, num_classes), num_classes, (2,))


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_generator_step_updates_only_the_generator() -> None:
    trainer = _trainer()
    teacher, fake, generator = _params(trainer.teacher), _params(trainer.fake), _params(trainer.generator)
    trainer.generator_step(torch.Generator().manual_seed(0))
    assert _same(teacher, _params(trainer.teacher)) and _same(fake, _params(trainer.fake))
    assert not _same(generator, _params(trainer.generator))
    assert all(p.grad is None for p in trainer.teacher.parameters())
    assert all(p.grad is None for p in trainer.fake.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(generator, _params(trainer.generator)))  # every tensor moved


def test_generator_gradient_flows_through_frozen_teacher_and_fake_networks() -> None:
    """The loss reaches G only through f_phi(x_t), f_psi(x_t) and x_g: changing either frozen net changes G's grad."""
    trainer = _trainer()

    def grad() -> torch.Tensor:
        loss, _ = trainer.generator_loss(torch.Generator().manual_seed(5))
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(trainer.generator.parameters()))])

    base = grad()
    with torch.no_grad():
        for p in trainer.teacher.parameters():
            p.add_(0.05)
    through_teacher = grad()
    with torch.no_grad():
        for p in trainer.fake.parameters():
            p.add_(0.05)
    through_fake = grad()
    assert not torch.allclose(base, through_teacher) and not torch.allclose(through_teacher, through_fake)


def test_fake_step_updates_only_the_fake_network() -> None:
    trainer = _trainer(conditional=True, guidance="zero_cfg")
    teacher, generator, fake = _params(trainer.teacher), _params(trainer.generator), _params(trainer.fake)
    trainer.fake_step(torch.Generator().manual_seed(0))
    assert _same(teacher, _params(trainer.teacher)) and _same(generator, _params(trainer.generator))
    assert not _same(fake, _params(trainer.fake))


@pytest.mark.parametrize("guidance", ["none", "cfg", "lsg", "zero_cfg", "anti_cfg"])
def test_guidance_variants_give_finite_losses(guidance: str) -> None:
    trainer = _trainer(conditional=True, guidance=guidance)
    gen = torch.Generator().manual_seed(0)
    losses = {**trainer.fake_step(gen), **trainer.generator_step(gen)}
    assert torch.isfinite(torch.tensor([losses["loss_fake"], losses["loss_gen"]])).all()


@pytest.mark.parametrize(("guidance", "fake_train", "real", "fake_eval"), [
    ("none", None, 1.0, 1.0),
    ("cfg", None, 1.7, 1.0),  # CFG lives in the teacher only
    ("lsg", 1.7, 1.7, 1.7),  # SiD-LSG: kappa1 (fake training) = kappa2,3 (fake evaluation) = kappa4 (teacher)
    ("zero_cfg", None, 1.0, 0.0),  # no CFG in the teacher, unconditional fake network
    ("anti_cfg", None, 1.0, -0.3),  # negative guidance in the fake network
])
def test_guidance_scales_reach_the_right_networks(monkeypatch: pytest.MonkeyPatch, guidance: str,
                                                  fake_train: float | None, real: float, fake_eval: float) -> None:
    trainer = _trainer(conditional=True, guidance=guidance, teacher_cfg=1.7, anti_cfg=-0.3)
    calls: list[tuple[str, float]] = []
    original = sid.guided

    def spy(denoiser: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None,
            scale: float, num_classes: int) -> torch.Tensor:
        calls.append(("teacher" if denoiser is trainer.teacher else "fake", scale))
        return original(denoiser, x, sigma, labels, scale, num_classes)

    monkeypatch.setattr(sid, "guided", spy)
    trainer.fake_step(torch.Generator().manual_seed(0))
    assert calls == ([("fake", fake_train)] if fake_train is not None else [])
    calls.clear()
    trainer.generator_loss(torch.Generator().manual_seed(0))
    assert calls == [("teacher", real), ("fake", fake_eval)]


def test_zero_cfg_trains_the_fake_network_without_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(conditional=True, guidance="zero_cfg")
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(sid, "denoising_loss",
                        lambda net, x, sigma, noise, sd, labels: seen.append(labels) or torch.zeros((), requires_grad=True))
    trainer.fake_step(torch.Generator().manual_seed(0))
    assert torch.equal(seen[0], torch.full((8,), 3))  # all labels are the "null" class (num_classes = 3)


def test_adam_has_beta1_zero_and_ema_starts_at_init() -> None:
    trainer = _trainer()
    assert trainer.opt_gen.param_groups[0]["betas"][0] == 0.0 == trainer.opt_fake.param_groups[0]["betas"][0]
    assert _same(_params(trainer.ema), _params(trainer.generator))


def test_few_step_generator_shapes_and_last_step_gradient() -> None:
    cfg = Config(task="image", width=8)
    net = make_network(cfg, 10)
    z = torch.randn(3, 1, 28, 28)
    x = generate(net, z, torch.tensor([0, 1, 10]), 2.5, steps=3, gen=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and x.requires_grad
    assert SmallUNet(8, 0)(z, torch.zeros(3)).shape == z.shape


def _run(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    train.main(["--config", str(SMOKE), "--out", str(out), *extra])
    return out


def test_training_is_deterministic(tmp_path: Path) -> None:
    a = load_checkpoint(_run(tmp_path, "a") / "generator.pt")["model"]
    b = load_checkpoint(_run(tmp_path, "b") / "generator.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
