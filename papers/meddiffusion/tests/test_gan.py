"""The medGAN-style baseline: shapes, and that each of its loss terms trains only the part it should."""

from __future__ import annotations

import torch

from papers.meddiffusion.gan import MedGANAugmenter


def _grads(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, bool]:
    module.zero_grad()
    loss.backward(retain_graph=True)
    return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in module.named_parameters()}


def test_gan_terms_train_only_their_own_parts() -> None:
    torch.manual_seed(0)
    gan = MedGANAugmenter(embed_dim=16, max_visits=6, dropout=0.0)
    e = torch.randn(5, 6, 16, requires_grad=True)
    lengths = torch.tensor([6, 1, 3, 4, 2])
    fake, terms = gan(e, lengths)
    assert fake.shape == e.shape and set(terms) == {"gan_reconstruction", "gan_generator", "gan_discriminator"}
    d = _grads(gan, terms["gan_discriminator"])
    assert d["discriminator.weight"] and not any(v for k, v in d.items() if not k.startswith("discriminator"))
    g = _grads(gan, terms["gan_generator"])
    assert not g["discriminator.weight"] and g["generator.linear1.weight"] and g["decoder.0.weight"]
    r = _grads(gan, terms["gan_reconstruction"])
    assert r["encoder.0.weight"] and not r["generator.linear1.weight"] and not r["discriminator.weight"]
    assert e.grad is None  # the autoencoder and discriminator never pull on the predictor's embeddings


def test_gan_losses_ignore_padded_visits() -> None:
    gan = MedGANAugmenter(embed_dim=8, max_visits=4, dropout=0.0)
    e = torch.randn(2, 4, 8)
    lengths = torch.tensor([2, 1])
    torch.manual_seed(1)
    a = gan(e, lengths)[1]
    junk = e.clone()
    junk[0, 2:] = 100.0
    junk[1, 1:] = -100.0
    torch.manual_seed(1)
    b = gan(junk, lengths)[1]
    for k in ("gan_reconstruction", "gan_discriminator"):
        torch.testing.assert_close(a[k], b[k])
