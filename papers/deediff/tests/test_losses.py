"""DeeDiff's loss terms and the VP-SDE on hand-worked and numerically integrated values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from papers.deediff.diffusion import (
    VPSDE,
    baseline_loss,
    deediff_losses,
    layer_weights,
    sample,
    uncertainty_target,
)


def test_uncertainty_target_by_hand() -> None:
    pred = torch.tensor([0.0, 0.5, -1.0, 3.0])
    noise = torch.tensor([0.0, 0.0, 0.0, 1.0])
    # 1 - tanh(|d|) for d = 0, 0.5, 1, 2
    expected = [1.0, 1 - 0.46211716, 1 - 0.76159416, 1 - 0.96402758]
    np.testing.assert_allclose(uncertainty_target(pred, noise).numpy(), expected, rtol=1e-6)
    assert not uncertainty_target(pred.requires_grad_(), noise).requires_grad


def test_layer_weights_by_hand_and_sum_to_one() -> None:
    certs = [torch.full((2, 1, 2, 2), v) for v in (0.2, 0.3, 0.5)]
    np.testing.assert_allclose(layer_weights(certs).numpy(), [0.2, 0.3, 0.5], rtol=1e-6)
    certs = [torch.tensor([[0.5, 1.5]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]])]  # means 1, 1, 2
    np.testing.assert_allclose(layer_weights(certs).numpy(), [0.25, 0.25, 0.5], rtol=1e-6)
    rand = [torch.rand(4, 1, 3, 3) for _ in range(9)]
    assert float(layer_weights(rand).sum()) == pytest.approx(1.0, abs=1e-6)


def test_deediff_losses_against_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 1, 2, 2, generator=gen)
    preds = [torch.randn(3, 1, 2, 2, generator=gen) for _ in range(4)]
    certs = [torch.rand(3, 1, 2, 2, generator=gen) for _ in range(4)]
    got = deediff_losses(preds, certs, noise)
    n, p, c = noise.numpy(), [q.numpy() for q in preds], [q.numpy() for q in certs]
    simple = np.mean((n - p[-1]) ** 2)
    uem = np.mean([np.mean((ci - (1 - np.tanh(np.abs(pi - n)))) ** 2) for pi, ci in zip(p, c)])
    w = np.array([ci.mean() for ci in c])
    w = w / w.sum()
    layerwise = sum(wi * np.mean((n - pi) ** 2) for wi, pi in zip(w, p))
    assert float(got["simple"]) == pytest.approx(simple, rel=1e-5)
    assert float(got["uem"]) == pytest.approx(uem, rel=1e-5)
    assert float(got["layerwise"]) == pytest.approx(layerwise, rel=1e-5)
    assert float(baseline_loss(preds[-1], noise)) == pytest.approx(simple, rel=1e-5)


def test_layerwise_weights_pass_gradient_to_certainties() -> None:
    noise = torch.zeros(1, 1, 1, 2)
    preds = [torch.ones(1, 1, 1, 2), torch.zeros(1, 1, 1, 2)]  # layer 1 is wrong, layer 2 exact
    certs = [torch.full((1, 1, 1, 2), 0.5, requires_grad=True) for _ in range(2)]
    deediff_losses(preds, certs, noise)["layerwise"].backward()
    # raising the certainty of the wrong layer raises the loss; of the exact layer lowers it (not detached)
    assert certs[0].grad.sum() > 0 > certs[1].grad.sum()


def test_vpsde_alpha_bar_matches_quadrature() -> None:
    sde = VPSDE(0.1, 20.0)
    for t in (0.0, 0.1, 0.5, 1.0):
        integral, _ = integrate.quad(lambda s: 0.1 + s * 19.9, 0, t)
        assert float(sde.cum_alpha(torch.tensor(t, dtype=torch.float64))) == pytest.approx(np.exp(-integral), rel=1e-9)


@pytest.mark.parametrize("method", ["ddim", "euler_maruyama"])
def test_samplers_recover_a_point_mass(method: str) -> None:
    """With the exact noise predictor of data concentrated at x0 = 0.3, both samplers end near 0.3."""
    sde = VPSDE()

    def exact(x: torch.Tensor, t_net: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        a = sde.cum_alpha(t_net / 999).view(-1, 1, 1, 1)
        return (x - a.sqrt() * 0.3) / (1 - a).sqrt(), torch.ones(len(x), dtype=torch.long)

    x1 = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    steps = 50 if method == "ddim" else 1000
    x0, depth, times = sample(sde, exact, x1, None, steps, method, torch.Generator().manual_seed(1))
    assert depth.shape == (steps, 8) and times[0] == pytest.approx(1.0) and times[-1] == pytest.approx(1e-3)
    np.testing.assert_allclose(x0.numpy(), 0.3, atol=0.05 if method == "euler_maruyama" else 1e-4)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(sde, exact, x1, None, 2, "heun")
