"""The model's math against naive references: stick-breaking attention, expert dispatch, the MI loss, the cache."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from papers.moduleformer.configuration import ModuleFormerConfig
from papers.moduleformer.modeling import (
    ModuleFormerForCausalLM,
    MoE,
    mutual_information_loss,
    stick_breaking_attention,
)


def tiny_config(**overrides: object) -> ModuleFormerConfig:
    base = dict(vocab_size=37, n_embd=16, n_layer=2, n_head=2, att_hidden=16, n_att_experts=4, k_att=2, ffd_hidden=12,
                n_mlp_experts=5, k_mlp=2, gating_size=8, bos_token_id=0, eos_token_id=0, pad_token_id=0, aux_loss_weight=0.01)
    base.update(overrides)
    return ModuleFormerConfig(**base)


def naive_stick_breaking(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """att_ij = z_ij prod_{j<m<=i}(1 - z_im), with q for the last T of S positions, by explicit loops."""
    t, s, d = q.shape[0], k.shape[0], q.shape[1]
    out = np.zeros((t, v.shape[1]))
    for ti in range(t):
        i = s - t + ti
        z = 1 / (1 + np.exp(-(k[: i + 1] @ q[ti]) / math.sqrt(d)))
        for j in range(i + 1):
            out[ti] += z[j] * np.prod(1 - z[j + 1 : i + 1]) * v[j]
    return out


@pytest.mark.parametrize("t,s", [(6, 6), (2, 7), (1, 4)])
def test_stick_breaking_matches_naive_loop(t: int, s: int) -> None:
    g = torch.Generator().manual_seed(t * 10 + s)
    q, k, v = (torch.randn(n, 3, generator=g, dtype=torch.float64) for n in (t, s, s))
    got = stick_breaking_attention(q, k, v).numpy()  # scores are computed in float32, as officially
    np.testing.assert_allclose(got, naive_stick_breaking(q.numpy(), k.numpy(), v.numpy()), rtol=1e-5, atol=1e-6)


def test_stick_breaking_is_causal_and_respects_padding() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 8, 4, generator=g) for _ in range(3))
    base = stick_breaking_attention(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, 5:] += 3.0
    v2[:, 5:] -= 2.0
    changed = stick_breaking_attention(q, k2, v2)
    torch.testing.assert_close(changed[:, :5], base[:, :5])  # positions < 5 never see keys >= 5
    assert not torch.allclose(changed[:, 5:], base[:, 5:])
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, :3] = False  # left padding: the first three keys are invisible
    padded = stick_breaking_attention(q, k, v, mask[:, None, :])
    torch.testing.assert_close(padded[:, 3:], stick_breaking_attention(q[:, 3:], k[:, 3:], v[:, 3:]))


def test_attention_weights_sum_to_at_most_one() -> None:
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    weights = stick_breaking_attention(q, k, torch.eye(5))  # v = identity reads the weights out
    assert (weights >= 0).all() and (weights.sum(-1) <= 1 + 1e-6).all()
    assert (weights.triu(1) == 0).all()


def test_expert_dispatch_equals_per_token_reference() -> None:
    torch.manual_seed(0)
    moe = MoE(d_in=6, d_hidden=5, n_experts=4, k=2, gating_size=8, dropout=0.0)
    x = torch.randn(11, 6)
    h, routing, _ = moe.map(x)
    y = moe.reduce(torch.nn.functional.gelu(h), routing)
    probs = moe.gate.w_gate(x).softmax(-1)
    expected = torch.zeros(11, 6)
    for n in range(11):
        gates, experts = probs[n].topk(2)
        for g, e in zip(gates, experts):
            expected[n] += g * (torch.nn.functional.gelu(x[n] @ moe.experts.weight[e]) @ moe.output_experts.weight[e])
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    assert h.shape == (11, 2, 5) and y.dtype == torch.float32
    assert sum(routing.expert_sizes) == 22


def test_dense_mode_sums_every_expert_with_weight_one() -> None:
    torch.manual_seed(0)
    moe = MoE(d_in=4, d_hidden=3, n_experts=3, k=3, gating_size=8, dropout=0.0, dense=True)
    x = torch.randn(5, 4)
    h, routing, aux = moe.map(x)
    expected = sum(x @ moe.experts.weight[e] @ moe.output_experts.weight[e] for e in range(3))
    torch.testing.assert_close(moe.reduce(h, routing), expected)
    assert routing is None and aux.item() == 0.0 and moe.gate is None


def test_mutual_information_loss_by_hand() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    p_e = np.array([0.4, 0.15, 0.45])
    h_e = -(p_e * np.log(p_e + 1e-8)).sum()
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    h_e_given_x = -(rows * np.log(rows + 1e-8)).sum(1).mean()
    assert mutual_information_loss(probs).item() == pytest.approx(h_e_given_x - h_e, rel=1e-6)
    uniform = torch.full((4, 3), 1 / 3)
    assert mutual_information_loss(uniform).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.eye(3)  # each token sure, experts used equally: the minimum, -log 3
    assert mutual_information_loss(one_hot).item() == pytest.approx(-math.log(3), abs=1e-5)


def test_forward_shapes_and_loss_includes_aux() -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 37, (3, 9))
    out = model(ids, labels=ids)
    assert out.logits.shape == (3, 9, 37) and out.logits.dtype == torch.float32
    ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 37), ids[:, 1:].reshape(-1))
    assert out.loss.item() == pytest.approx(ce.item() + 0.01 * out.aux_loss.item(), rel=1e-6)


@pytest.mark.parametrize("dense", [False, True])
def test_generation_with_and_without_cache_agree(dense: bool) -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config(dense=dense)).eval()
    prompt = torch.randint(1, 37, (2, 5))
    kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=7, min_new_tokens=7, do_sample=False)
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached.shape == (2, 12)
    torch.testing.assert_close(cached, uncached)
    # the cache also gives the full forward's logits for the last position
    full = model(cached).logits[:, -1]
    step = model(cached[:, :-1], use_cache=True)
    torch.testing.assert_close(model(cached[:, -1:], cache=step.cache, use_cache=True).logits[:, -1], full, rtol=1e-4, atol=1e-5)


def test_save_and_load_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "moduleformer"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ModuleFormerForCausalLM)
    ids = torch.randint(0, 37, (2, 6))
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_bad_model_config_fails_clearly() -> None:
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(att_hidden=15)
    with pytest.raises(ValueError, match="k_att"):
        tiny_config(k_att=5)
