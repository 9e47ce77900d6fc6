"""Step-wise attention, the shared synthetic branch, the loss composition and every model's shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers.meddiffusion.masks import masked_mse
from papers.meddiffusion.models import (
    MODELS,
    OfficialMedDiffusion,
    RiskModel,
    StepAttention,
    StepwiseAttentionLSTM,
    meddiffusion_loss,
    reverse_valid,
)


def test_stepwise_attention_hand_worked() -> None:
    """W1 = 0 makes the scores W2 tanh(0) + b2 = b2 = [0, ln 3], so [a1, a2] = [1/4, 3/4];
    W_hk = 2 I, h = (1, -1), e = (1, 2): e_bar = 1/4 (1, 2) + 3/4 (2, -2) = (1.75, -1.0)."""
    att = StepAttention(2, 2)
    with torch.no_grad():
        att.w_hk.weight.copy_(2 * torch.eye(2))
        att.w1.weight.zero_()
        att.w1.bias.zero_()
        att.w2.weight.zero_()
        att.w2.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    e_bar, weights = att(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, -1.0]]))
    assert torch.allclose(weights, torch.tensor([[0.25, 0.75]]))
    assert torch.allclose(e_bar, torch.tensor([[1.75, -1.0]]))


def test_stepwise_attention_matches_numpy() -> None:
    torch.manual_seed(0)
    att = StepAttention(4, 3, attn_dim=5)
    e, h = torch.randn(6, 4), torch.randn(6, 3)
    e_bar, weights = att(e, h)
    p = {k: v.detach().numpy().astype(np.float64) for k, v in att.named_parameters()}
    proj = h.numpy() @ p["w_hk.weight"].T
    scores = np.tanh(np.concatenate([e.numpy(), proj], 1) @ p["w1.weight"].T + p["w1.bias"]) @ p["w2.weight"].T + p["w2.bias"]
    a = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    np.testing.assert_allclose(weights.detach().numpy(), a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e_bar.detach().numpy(), a[:, :1] * e.numpy() + a[:, 1:] * proj, rtol=1e-5, atol=1e-6)


def test_fixed_and_no_attention_and_first_visit() -> None:
    torch.manual_seed(0)
    e = torch.randn(2, 4, 3)
    fixed = StepwiseAttentionLSTM(3, 3, attention="fixed")
    _, fed = fixed.run(e, attend=True)
    assert torch.equal(fed[:, 0], e[:, 0])  # e_bar_0 = e_0
    assert torch.allclose(fixed.last_weights, torch.full((2, 3, 2), 0.5))
    none = StepwiseAttentionLSTM(3, 3, attention="none")
    assert torch.equal(none.run(e, attend=True)[1], e)
    first = StepwiseAttentionLSTM(3, 3, attention="none", attention_input="first_visit")
    assert torch.equal(first.run(e, attend=True)[1], e[:, :1].expand_as(e))


@pytest.mark.parametrize("augment", [False, True])
def test_official_meddiffusion_predicts_like_a_plain_lstm_with_shared_weights(augment: bool) -> None:
    """The official wiring: the attention never reaches the prediction, so with the same encoder, LSTM and
    classifier weights MedDiffusion's logits are a plain LSTM's (with augmentation off, and at inference)."""
    torch.manual_seed(0)
    lstm = RiskModel(12, "lstm", 16, 16, 6, dropout=0.0, augment=False).eval()
    med = RiskModel(12, "meddiffusion", 16, 16, 6, dropout=0.0, augment=augment, denoiser_channels=8).eval()
    missing, unexpected = med.load_state_dict(lstm.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("sequence.mixer.", "augmenter.")) for k in missing)
    codes, days, lengths = _batch()
    expected = lstm(codes, days, lengths)["logits"]
    torch.testing.assert_close(med(codes, days, lengths)["logits"], expected, rtol=0, atol=0)
    with torch.no_grad():
        for p in med.sequence.mixer.parameters():
            p.add_(1.0)  # the attention only shapes what the augmenter sees
    torch.testing.assert_close(med(codes, days, lengths)["logits"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("attention_input", ["per_visit", "first_visit"])
def test_official_e_bar_mixes_e_k_or_e_0_with_the_plain_lstm_state(attention_input: str) -> None:
    torch.manual_seed(0)
    seq = OfficialMedDiffusion(4, 4, attention_input=attention_input)
    e = torch.randn(3, 5, 4)
    _, e_bar = seq(e, torch.tensor([5, 3, 1]))
    hidden = seq.rnn(e)[0]
    assert torch.equal(e_bar[:, 0], e[:, 0])  # e_bar_0 = e_0
    for k in range(1, 5):
        source = e[:, 0] if attention_input == "first_visit" else e[:, k]
        torch.testing.assert_close(e_bar[:, k], seq.mixer(source, hidden[:, k - 1])[0])
    assert torch.equal(OfficialMedDiffusion(4, 4, attention="none")(e, torch.tensor([5, 3, 1]))[1], e)


def test_reverse_valid_keeps_padding_at_the_end() -> None:
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_valid(x, torch.tensor([3, 4]))
    assert out[0, :, 0].tolist() == [2.0, 1.0, 0.0, 3.0]
    assert out[1, :, 0].tolist() == [7.0, 6.0, 5.0, 4.0]


def _batch(batch: int = 5, steps: int = 6, codes: int = 3, vocab: int = 12) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 1, 3, 4, 2])[:batch]
    c = torch.randint(1, vocab + 1, (batch, steps, codes), generator=g)
    c[torch.arange(steps)[None, :].expand(batch, -1) >= lengths[:, None]] = 0
    days = torch.rand(batch, steps, generator=g) * 400
    return c, days, lengths


@pytest.mark.parametrize("name, structure, augmenter", [(m, "official", "diffusion") for m in MODELS]
                         + [("meddiffusion", "attended", "diffusion"), ("lstm", "official", "gan")])
def test_every_model_gives_two_logits_and_ignores_padding(name: str, structure: str, augmenter: str) -> None:
    torch.manual_seed(0)
    model = RiskModel(12, name, embed_dim=16, hidden_dim=16, max_visits=6, dropout=0.0, denoiser_channels=8,
                      diffusion_steps=50, structure=structure, augmenter=augmenter).train()
    codes, days, lengths = _batch()
    out = model(codes, days, lengths, synthesize=True)
    assert out["logits_synthetic"].shape == (5, 2)
    assert all(v.dim() == 0 and torch.isfinite(v) for k, v in out.items() if k not in ("logits", "logits_synthetic"))
    model.eval()
    out = model(codes, days, lengths)
    assert out["logits"].shape == (5, 2) and out["logits"].dtype == torch.float32
    # changing what sits in padded positions changes nothing
    junk = codes.clone()
    junk[1, 1:] = 7
    torch.testing.assert_close(model(junk, days, lengths)["logits"], out["logits"])


def test_synthetic_branch_shares_the_real_branch_parameters() -> None:
    torch.manual_seed(0)
    plain = RiskModel(12, "meddiffusion", 16, 16, 6, augment=False, structure="attended")
    augmented = RiskModel(12, "meddiffusion", 16, 16, 6, augment=True, denoiser_channels=8, structure="attended")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(augmented) == n(plain) + n(augmented.augmenter)  # no second LSTM or classifier
    codes, days, lengths = _batch()
    out = augmented(codes, days, lengths, synthesize=True)
    out["logits_synthetic"].sum().backward()
    for module in (augmented.sequence.cell, augmented.classifier, augmented.augmenter.denoiser):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters() if p.dim() > 1)


def test_inference_never_uses_the_diffusion_module() -> None:
    torch.manual_seed(0)
    model = RiskModel(12, "meddiffusion", 16, 16, 6, denoiser_channels=8).eval()
    codes, days, lengths = _batch()
    before = model(codes, days, lengths)
    with torch.no_grad():
        for p in model.augmenter.parameters():
            p.add_(1.0)
    assert set(before) == {"logits"}
    torch.testing.assert_close(model(codes, days, lengths)["logits"], before["logits"])


def test_loss_composition_against_numpy() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    logits_syn = torch.tensor([[0.5, 0.5], [1.0, -1.0]])
    labels = torch.tensor([0, 1])
    out = {"logits": logits, "logits_synthetic": logits_syn, "mse_noise": torch.tensor(0.5)}
    parts = meddiffusion_loss(out, labels, lambda_s=0.5, lambda_d=0.1)

    def ce(z: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    ce_real, ce_syn = ce(logits.numpy(), labels.numpy()), ce(logits_syn.numpy(), labels.numpy())
    assert parts["ce_real"].item() == pytest.approx(ce_real, rel=1e-6)
    assert parts["ce_synthetic"].item() == pytest.approx(ce_syn, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(ce_real + 0.5 * ce_syn + 0.1 * 0.5, rel=1e-6)
    gan = meddiffusion_loss({"logits": logits, "logits_synthetic": logits_syn, "gan_generator": torch.tensor(2.0),
                             "gan_discriminator": torch.tensor(3.0)}, labels, 0.5, 0.1)
    assert gan["loss"].item() == pytest.approx(ce_real + 0.5 * ce_syn + 5.0, rel=1e-6)
    only_real = meddiffusion_loss({"logits": logits}, labels, 0.5, 0.1)
    assert only_real["loss"].item() == pytest.approx(ce_real, rel=1e-6)


def test_masked_mse_ignores_padded_visits() -> None:
    pred = torch.zeros(2, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [5.0, 5.0]]])
    # three real visits x 2 dims; patient 2's padded visit (5, 5) is ignored
    assert masked_mse(pred, target, torch.tensor([2, 1])).item() == pytest.approx((1.0 + 1.0 + 1.0) / 6)


def test_unknown_model_or_attention_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        RiskModel(12, "gpt", 16, 16, 6)
    with pytest.raises(ValueError, match="attention"):
        StepwiseAttentionLSTM(4, 4, attention="sometimes")
    with pytest.raises(ValueError, match="structure"):
        RiskModel(12, "meddiffusion", 16, 16, 6, structure="fancy")
