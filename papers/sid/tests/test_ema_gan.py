"""EMA ramp-up, teacher EMA and its cache key, one step count per iteration, fake-net label dropout, Diffusion-GAN."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from papers.sid import sid
from papers.sid.config import Config
from papers.sid.edm import ema_beta
from papers.sid.sid import SiDTrainer, gan_bce
from papers.sid.task import build_task, make_network, pretrain, teacher_path
from shared.runs import ConfigError, load_config

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


def _trainer(real: bool = False, **overrides: object) -> SiDTrainer:
    cfg = Config(width=16, batch_size=8, **overrides)
    torch.manual_seed(0)
    num_classes = 3 if cfg.conditional else 0
    data = (torch.randn(64, 2), torch.randint(0, 3, (64,))) if real else None
    return SiDTrainer(cfg, make_network(cfg, num_classes), make_network(cfg, num_classes), num_classes, (2,),
                      real=data)


def test_ema_beta_ramp_up_by_hand() -> None:
    assert ema_beta(32, 500.0, images_seen=0, rampup_ratio=0.05) == 0.0  # first update copies the network
    assert math.isclose(ema_beta(32, 500.0, 6400, 0.05), 0.5 ** (32 / 320))  # half-life = 5% of 6400 images
    assert math.isclose(ema_beta(32, 2.0, 10**6, 0.05), 0.5 ** (32 / 2000))  # the half-life cap takes over
    assert math.isclose(ema_beta(32, 2.0, 0, 0.0), 0.5 ** (32 / 2000))  # no ramp-up: the old behaviour


def test_after_one_round_the_ema_equals_the_generator() -> None:
    trainer = _trainer(ema_halflife_kimg=500.0, ema_rampup_ratio=0.05)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.round(torch.Generator().manual_seed(0), images_seen=0)
    gen = list(trainer.generator.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(before, gen))
    assert all(torch.equal(e, p) for e, p in zip(trainer.ema.parameters(), gen))
    trainer.round(torch.Generator().manual_seed(1), images_seen=8)  # later rounds average
    assert not all(torch.equal(e, p) for e, p in zip(trainer.ema.parameters(), trainer.generator.parameters()))


def test_teacher_pretraining_returns_the_ema_and_the_cache_key_names_it(tmp_path: Path) -> None:
    cfg = Config(width=16, pretrain_steps=6, pretrain_batch=16, pretrain_ema_halflife_kimg=500.0)
    data = torch.randn(128, 2)
    torch.manual_seed(0)
    raw_net = make_network(cfg, 0)
    torch.manual_seed(0)
    ema = pretrain(cfg, make_network(cfg, 0), data, None, "t")
    raw = pretrain(Config(**{**cfg.__dict__, "pretrain_ema_halflife_kimg": 0.0}), raw_net, data, None, "t")
    assert all(torch.equal(a, b) for a, b in zip(raw.parameters(), raw_net.parameters()))  # half-life 0: raw
    assert not all(torch.equal(a, b) for a, b in zip(ema.parameters(), raw.parameters()))
    image = Config(task="image", pretrain_ema_halflife_kimg=500.0)
    keys = {teacher_path(c, tmp_path).name for c in (
        image, Config(task="image", pretrain_ema_halflife_kimg=0.0), Config(task="image", ema_rampup_ratio=0.1))}
    assert len(keys) == 3  # EMA half-life and ramp-up are part of the key
    assert teacher_path(Config(task="image", seed=1, teacher_seed=0), tmp_path) == teacher_path(image, tmp_path)


def test_one_step_count_per_iteration_for_both_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(gen_steps=4)
    seen: list[int] = []
    original = sid.generate

    def spy(*args: object, **kwargs: object) -> torch.Tensor:  # generate(net, z, labels, sigma_init, steps, upto=)
        seen.append(kwargs["upto"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sid, "generate", spy)
    for step in range(12):
        trainer.round(torch.Generator().manual_seed(step), images_seen=8 * step)
    pairs = list(zip(seen[::2], seen[1::2]))
    assert all(a == b for a, b in pairs) and len({a for a, _ in pairs}) > 1 and set(seen) <= {1, 2, 3, 4}


@pytest.mark.parametrize(("guidance", "dropped"), [("none", False), ("cfg", False), ("lsg", True),
                                                   ("anti_cfg", True)])
def test_fake_labels_are_dropped_only_where_guidance_needs_it(monkeypatch: pytest.MonkeyPatch, guidance: str,
                                                              dropped: bool) -> None:
    trainer = _trainer(conditional=True, guidance=guidance, label_dropout=1.0)  # drop all when dropping
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(sid, "denoising_loss", lambda net, x, sigma, noise, sd, labels: seen.append(labels)
                        or torch.zeros((), requires_grad=True))
    trainer.fake_step(torch.Generator().manual_seed(0))
    assert bool((seen[0] == 3).all()) == dropped and (dropped or bool((seen[0] < 3).all()))


def test_gan_bce_by_hand() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 20.0]], dtype=torch.float64)
    sig = torch.sigmoid(torch.tensor([[0.0, 2.0], [-1.0, 10.0]], dtype=torch.float64))  # 20 is clamped to 10
    assert torch.allclose(gan_bce(logits, 1.0), -sig.log().mean(1))
    assert torch.allclose(gan_bce(logits, 0.0), -(1 - sig).log().mean(1))


def test_discriminator_logits_come_from_the_encoder() -> None:
    unet = make_network(Config(task="image", width=8), 0)
    x = torch.randn(3, 1, 28, 28)
    out, logits = unet(x, torch.ones(3), None, with_logits=True)
    assert out.shape == (3, 1, 28, 28) and logits.shape == (3, 1, 7, 7) and torch.equal(out, unet(x, torch.ones(3)))
    with torch.no_grad():  # the decoder path does not feed the logits; the bottleneck does
        unet.net.up1.conv1.weight.add_(1.0)
    out2, logits2 = unet(x, torch.ones(3), None, with_logits=True)
    assert torch.equal(logits, logits2) and not torch.equal(out, out2)
    with torch.no_grad():
        unet.net.mid.conv1.weight.add_(1.0)
    assert not torch.equal(logits, unet(x, torch.ones(3), None, with_logits=True)[1])
    mlp = make_network(Config(width=16), 0)
    x = torch.randn(5, 2)
    out, logits = mlp(x, torch.ones(5), None, with_logits=True)
    assert logits.shape == (5, 1) and torch.equal(out, mlp(x, torch.ones(5)))


def test_gan_updates_the_discriminator_and_the_generator_loss_mixes_after_its_start() -> None:
    trainer = _trainer(real=True, gan=True, gan_start_kimg=1.0)
    fake_before = [p.detach().clone() for p in trainer.fake.parameters()]
    parts = trainer.fake_step(torch.Generator().manual_seed(0))
    assert math.isfinite(parts["loss_disc"]) and parts["loss_disc"] > 0
    assert not all(torch.equal(a, b) for a, b in zip(fake_before, trainer.fake.parameters()))
    before, p_before = trainer.generator_loss(torch.Generator().manual_seed(3), images_seen=0)
    after, p_after = trainer.generator_loss(torch.Generator().manual_seed(3), images_seen=1000)
    assert math.isclose(float(before), p_before["loss_sid"], rel_tol=1e-6)  # before gan_start: SiD only
    assert math.isclose(float(after), 0.5 * p_after["loss_sid"] + 0.5 * p_after["loss_gen_gan"], rel_tol=1e-5)
    with pytest.raises(ValueError, match="real data"):
        _trainer(gan=True)


def test_mlp_teacher_option(tmp_path: Path) -> None:
    cfg = load_config(Config, SMOKE, ["toy_teacher=mlp", "pretrain_steps=3"])
    task = build_task(cfg, tmp_path)
    assert task.teacher is task.init and task.exact_teacher is not None
    with pytest.raises(ConfigError, match="toy_teacher=mlp"):
        load_config(Config, SMOKE, ["toy_teacher=mlp", "task=image"])
