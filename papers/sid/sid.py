"""Score identity Distillation: generator and fake-score losses, the (few-step) generator and one training round.

Each update first draws its GLOBAL batch of random inputs (latents, labels, noise levels, noise) from the round's
seeded generator, then runs through :meth:`TrainContext.train_step`, so micro-batches and several processes give the
update of the whole batch."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn import functional as F

from papers.sid.config import Config
from papers.sid.edm import (
    RHO,
    SIGMA_MAX,
    SIGMA_MIN,
    Denoiser,
    denoising_loss,
    ema_beta,
    ema_update,
    sample_training_sigma,
    weighted_denoising_error,
)
from shared.accel import TrainContext, setup_training


def sample_generator_sigma(n: int, tmax: int = 800, gen: torch.Generator | None = None) -> torch.Tensor:
    """t ~ U(0, tmax/1000), sigma = (smax^(1/rho) + (1 - t)(smin^(1/rho) - smax^(1/rho)))^rho (SiD code, Sec. 4)."""
    t = torch.rand(n, generator=gen) * (tmax / 1000)
    lo, hi = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    return (hi + (1 - t) * (lo - hi)) ** RHO


def generator_sigma_range(tmax: int = 800) -> tuple[float, float]:
    lo, hi = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    return SIGMA_MIN, (hi + (1 - tmax / 1000) * (lo - hi)) ** RHO


def guided(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None, scale: float,
           num_classes: int) -> torch.Tensor:
    """Classifier-free guidance D_u + scale (D_c - D_u): scale 1 = conditional, 0 = unconditional, < 0 = anti."""
    if labels is None or scale == 1.0:
        return denoiser(x, sigma, labels)
    uncond = denoiser(x, sigma, torch.full_like(labels, num_classes))
    if scale == 0.0:
        return uncond
    return uncond + scale * (denoiser(x, sigma, labels) - uncond)


def sid_generator_loss(f_real: torch.Tensor, f_fake: torch.Tensor, x_g: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-sample SiD loss (Zhou et al. 2024, eq. 22 / Algorithm 1), L2 - alpha L1 over w:
    (f_phi - f_psi) . ((f_phi - x_g) - alpha (f_phi - f_psi)) / w, with w = mean|x_g - f_phi| taken without gradient."""
    with torch.no_grad():
        w = (x_g - f_real).abs().flatten(1).mean(1).clamp_min(1e-5)
    diff = f_real - f_fake
    return (diff * ((f_real - x_g) - alpha * diff)).flatten(1).sum(1) / w


def gan_bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Per-sample BCE of logits clamped to [-10, 10] against a constant label (1 real, 0 fake), averaged over the
    logits of a sample (Diffusion-GAN loss of SiDA / ml-sid-dit)."""
    loss = F.binary_cross_entropy_with_logits(logits.clamp(-10, 10), torch.full_like(logits, target), reduction="none")
    return loss.flatten(1).mean(1)


def step_sigmas(sigma_init: float, steps: int) -> list[float]:
    """Noise levels of the K-step generator: sigma_init (1 - i/K), i = 0..K-1 (few-step SiD, arXiv 2505.12674)."""
    return [sigma_init * (1 - i / steps) for i in range(steps)]


def generate(generator: Denoiser, z: torch.Tensor, labels: torch.Tensor | None, sigma_init: float, steps: int,
             gen: torch.Generator | None = None, upto: int | None = None,
             renoise: torch.Tensor | None = None) -> torch.Tensor:
    """x = G(sigma_init z); then re-noise x at sigma_i and denoise again for i < upto (default: all K steps).
    The re-noising noise is ``renoise[:, i - 1]`` when given, else drawn from ``gen``.
    Only the last step keeps gradients (earlier steps are detached)."""
    sigmas = step_sigmas(sigma_init, steps)[: upto or steps]
    x = z
    for i, sigma in enumerate(sigmas):
        if i == 0:
            noisy = sigma * z
        else:
            eps = renoise[:, i - 1] if renoise is not None else torch.randn(x.shape, generator=gen)
            noisy = x + sigma * eps.to(x)
        if i < len(sigmas) - 1:
            with torch.no_grad():
                x = generator(noisy, torch.tensor(sigma), labels)
        else:
            x = generator(noisy, torch.tensor(sigma), labels)
    return x


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like).reshape(-1, *([1] * (like.ndim - 1)))


Batch = dict[str, torch.Tensor]


class SiDTrainer:
    """Teacher f_phi (frozen), fake score f_psi and generator G (both initialised from ``init``), EMA of G.
    With cfg.gan, f_psi's encoder also carries the Diffusion-GAN discriminator, fed real data (``real``).
    ``ctx`` places the nets and runs each update (default: one CPU process in fp32)."""

    def __init__(self, cfg: Config, teacher: nn.Module, init: nn.Module, num_classes: int, shape: tuple[int, ...],
                 device: torch.device | str = "cpu",
                 real: tuple[torch.Tensor, torch.Tensor | None] | None = None, ctx: TrainContext | None = None) -> None:
        self.ctx = ctx or setup_training(str(device), "fp32", global_batch=cfg.batch_size)
        self.cfg, self.num_classes, self.shape, self.device = cfg, num_classes, shape, self.ctx.device
        if cfg.gan and real is None:
            raise ValueError("gan=true needs real data for the discriminator")
        self.real = real
        self.teacher = teacher.to(self.device).requires_grad_(False).eval()
        # both trained nets stay bare modules: train_step all-reduces their gradients (two nets, two optimizers)
        self.fake = self.ctx.prepare(copy.deepcopy(init).requires_grad_(True).train(), wrap=False)
        self.generator = self.ctx.prepare(copy.deepcopy(init).requires_grad_(True).train(), wrap=False)
        self.ema = copy.deepcopy(init).to(self.device).requires_grad_(False).eval()
        adam = {"lr": cfg.lr, "betas": (0.0, 0.999), "eps": cfg.adam_eps}  # Adam with beta1 = 0 (SiD code)
        self.opt_fake = torch.optim.Adam(self.fake.parameters(), **adam)
        self.opt_gen = torch.optim.Adam(self.generator.parameters(), **adam)

    def draw_steps(self, gen: torch.Generator) -> int:
        """k ~ U{1..K}: one per iteration, shared by both updates (ml-sid-dit's num_steps_random), so the
        generator's outputs over iterations form the uniform mixture of its K step outputs (few-step SiD)."""
        return int(torch.randint(1, self.cfg.gen_steps + 1, (1,), generator=gen)) if self.cfg.gen_steps > 1 else 1

    def _latents(self, gen: torch.Generator, upto: int) -> Batch:
        """z, labels (conditional) and the re-noising of steps 2..upto for one generator batch."""
        n = self.cfg.batch_size
        batch = {"z": torch.randn((n, *self.shape), generator=gen)}
        if self.num_classes:
            batch["labels"] = torch.randint(0, self.num_classes, (n,), generator=gen)
        if upto > 1:
            batch["renoise"] = torch.stack([torch.randn((n, *self.shape), generator=gen) for _ in range(upto - 1)], 1)
        return batch

    def _drops_labels(self) -> bool:
        return bool(self.num_classes) and self.cfg.guidance in ("lsg", "anti_cfg")

    def fake_batch(self, gen: torch.Generator, upto: int = 1) -> Batch:
        """The global batch of the fake-score update: latents, label dropout, EDM sigma and noise (and real data)."""
        cfg, n = self.cfg, self.cfg.batch_size
        batch = self._latents(gen, upto)
        if self._drops_labels():
            batch["drop"] = torch.rand(n, generator=gen) < cfg.label_dropout
        batch["sigma"] = sample_training_sigma(n, gen)
        batch["noise"] = torch.randn((n, *self.shape), generator=gen)
        if cfg.gan:
            data, labels = self.real
            idx = torch.randint(0, len(data), (n,), generator=gen)
            batch["real"] = data[idx]
            if labels is not None and self.num_classes:
                batch["real_labels"] = labels[idx]
                if self._drops_labels():
                    batch["real_drop"] = torch.rand(n, generator=gen) < cfg.label_dropout
        return batch

    def generator_batch(self, gen: torch.Generator, upto: int = 1) -> Batch:
        """The global batch of the generator update: latents, sigma ~ the SiD t-schedule, noise."""
        batch = self._latents(gen, upto)
        batch["sigma"] = sample_generator_sigma(self.cfg.batch_size, self.cfg.tmax, gen)
        batch["noise"] = torch.randn((self.cfg.batch_size, *self.shape), generator=gen)
        return batch

    def _generate(self, generator: nn.Module, batch: Batch) -> torch.Tensor:
        upto = 1 + (batch["renoise"].shape[1] if "renoise" in batch else 0)
        return generate(generator, batch["z"], batch.get("labels"), self.cfg.sigma_init, self.cfg.gen_steps,
                        upto=upto, renoise=batch.get("renoise"))

    def _fake_labels(self, labels: torch.Tensor | None, drop: torch.Tensor | None) -> torch.Tensor | None:
        """Conditions f_psi is trained on: all null for Zero-CFG; 10% blanked (``drop``) only where the generator
        loss needs f_psi's unconditional output (LSG, Anti-CFG); unchanged for none / cfg, as in the official code."""
        if labels is None or self.cfg.guidance in ("none", "cfg"):
            return labels
        null = torch.full_like(labels, self.num_classes)
        if self.cfg.guidance == "zero_cfg":
            return null
        return torch.where(drop, null, labels)

    def fake_loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """EDM denoising loss of f_psi on detached generator samples (SiD Algorithm 1, fake-score update); with gan,
        plus the discriminator loss (BCE real vs generator, both noised with the same sigma and noise, logits from
        f_psi's encoder; per sample mean BCE times the coordinates of a sample, as in the SiDA / ml-sid-dit code)."""
        cfg = self.cfg
        with torch.no_grad():
            x_g = self._generate(self.generator, batch)
        labels = self._fake_labels(batch.get("labels"), batch.get("drop"))
        fake: Denoiser = net
        if cfg.guidance == "lsg":  # SiD-LSG: f_psi is trained through its guided output (kappa1, official code)
            fake = functools.partial(guided, net, scale=cfg.teacher_cfg, num_classes=self.num_classes)
        if not cfg.gan:
            return denoising_loss(fake, x_g, batch["sigma"], batch["noise"], cfg.sigma_data, labels), {}
        sigma, noise = _per_sample(batch["sigma"], x_g), batch["noise"].to(x_g)
        denoised, logit_fake = net(x_g + sigma * noise, sigma, labels, with_logits=True)
        if cfg.guidance == "lsg":
            denoised = fake(x_g + sigma * noise, sigma, labels)
        loss = weighted_denoising_error(denoised, x_g, sigma, cfg.sigma_data).mean()
        y_r = self._fake_labels(batch.get("real_labels"), batch.get("real_drop"))
        _, logit_real = net(batch["real"] + sigma * noise, sigma, y_r, with_logits=True)
        loss_d = ((gan_bce(logit_real, 1.0) + gan_bce(logit_fake, 0.0)) / 2 * x_g[0].numel()).mean()
        return loss + loss_d, {"loss_disc": loss_d.detach()}

    def fake_step(self, gen: torch.Generator, upto: int = 1) -> dict[str, float]:
        """One Adam step of f_psi on the round's fake batch."""
        stats = self.ctx.train_step(self.fake, self.opt_fake, self.fake_batch(gen, upto), self.fake_loss)
        return {"loss_fake": stats["loss"], **_parts(stats)}

    def generator_loss_fn(self, net: nn.Module, batch: Batch,
                          images_seen: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SiD generator loss on x_t = G(z) + sigma n; gradients flow through frozen f_phi and f_psi into G(z).
        With gan (after gan_start_kimg): 0.5 SiD + 0.5 BCE(D(x_t), real) / w (ml-sid-dit / SiDA)."""
        cfg = self.cfg
        x_g = self._generate(net, batch)
        labels = batch.get("labels")
        sigma = _per_sample(batch["sigma"], x_g)
        x_t = x_g + sigma * batch["noise"].to(x_g)
        real_scale = cfg.teacher_cfg if cfg.guidance in ("cfg", "lsg") else 1.0  # CFG in the teacher (kappa4)
        fake_scale = {"zero_cfg": 0.0, "anti_cfg": cfg.anti_cfg, "lsg": cfg.teacher_cfg}.get(cfg.guidance, 1.0)
        f_real = guided(self.teacher, x_t, sigma, labels, real_scale, self.num_classes)
        f_fake = guided(self.fake, x_t, sigma, labels, fake_scale, self.num_classes)
        per_sample = sid_generator_loss(f_real, f_fake, x_g, cfg.alpha)
        loss = per_sample.sum() * (cfg.loss_scale / len(x_g))  # lsg / batch (official loss scaling)
        if not cfg.gan:
            return loss, {}
        _, logits = self.fake(x_t, sigma, labels, with_logits=True)
        with torch.no_grad():
            w = (x_g - f_real).abs().flatten(1).mean(1).clamp_min(1e-5)
        loss_gan = (gan_bce(logits, 1.0) / w * x_g[0].numel()).mean()
        parts = {"loss_sid": loss.detach(), "loss_gen_gan": loss_gan.detach()}
        if images_seen >= cfg.gan_start_kimg * 1000:
            loss = 0.5 * loss + 0.5 * loss_gan
        return loss, parts

    def generator_loss(self, gen: torch.Generator, upto: int = 1,
                       images_seen: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator loss of a whole freshly drawn batch (for inspection; training goes through train_step)."""
        batch = {k: v.to(self.device) for k, v in self.generator_batch(gen, upto).items()}
        loss, parts = self.generator_loss_fn(self.generator, batch, images_seen)
        return loss, {k: float(v) for k, v in parts.items()}

    def generator_step(self, gen: torch.Generator, upto: int = 1, images_seen: int = 0) -> dict[str, float]:
        """One Adam step of G, then the EMA with the official ramp-up (images_seen = images before this update)."""
        self.fake.requires_grad_(False)
        loss_fn = functools.partial(self.generator_loss_fn, images_seen=images_seen)
        stats = self.ctx.train_step(self.generator, self.opt_gen, self.generator_batch(gen, upto), loss_fn)
        self.fake.requires_grad_(True)
        beta = ema_beta(self.cfg.batch_size, self.cfg.ema_halflife_kimg, images_seen, self.cfg.ema_rampup_ratio)
        ema_update(self.ema, self.generator, beta)
        return {"loss_gen": stats["loss"], **_parts(stats)}

    def round(self, gen: torch.Generator, images_seen: int) -> dict[str, float]:
        """One SiD iteration (Algorithm 1): update f_psi, then G, with one step count k for both."""
        upto = self.draw_steps(gen)
        return {**self.fake_step(gen, upto), **self.generator_step(gen, upto, images_seen)}

    def state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in ("fake", "generator", "ema", "opt_fake", "opt_gen")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            getattr(self, name).load_state_dict(value)


def _parts(stats: dict[str, float]) -> dict[str, float]:
    """train_step's named loss parts (without its loss and grad norm)."""
    return {k: v for k, v in stats.items() if k not in ("loss", "grad_norm")}
