"""The AdaLink module: identity at initialisation, adapter-only gradients, routing by modality, save/load."""

from pathlib import Path

import pytest
import torch

from papers.adalink.adalink import WEIGHTS_FILE, AdaLinkModel, LowRankAdapter
from papers.adalink.models import tiny_llama


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, 11), generator=torch.Generator().manual_seed(seed))


def _perturb(model: AdaLinkModel) -> None:
    torch.manual_seed(1)
    for p in model.adapters.parameters():
        p.data.normal_(0, 0.3)


def test_zero_initialised_adapter_leaves_base_outputs_unchanged() -> None:
    base = tiny_llama().eval()
    ids = _ids()
    expected = base(input_ids=ids).logits
    model = AdaLinkModel(base, rank=4).eval()
    assert torch.equal(model(input_ids=ids).logits, expected)
    assert torch.count_nonzero(model.adapters["text"].up.weight) == 0


def test_adapter_math_matches_hand_computation() -> None:
    adapter = LowRankAdapter(6, 2)
    torch.manual_seed(0)
    down, up = torch.randn(2, 6), torch.randn(6, 2)
    adapter.down.weight.data, adapter.up.weight.data = down.clone(), up.clone()
    x = torch.randn(4, 6)
    torch.testing.assert_close(adapter(x), x + x @ down.T @ up.T)


def test_only_adapter_parameters_get_gradients_and_base_weights_stay() -> None:
    base = tiny_llama()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = AdaLinkModel(base, rank=4)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        model(input_ids=_ids()).logits.square().mean().backward()
        grads = {n for n, p in model.named_parameters() if p.grad is not None}
        assert grads == {"adapters.text.down.weight", "adapters.text.up.weight"}
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert torch.count_nonzero(model.adapters["text"].up.weight) > 0  # the adapter did learn


def test_modalities_route_each_token_to_its_own_adapter() -> None:
    model = AdaLinkModel(tiny_llama(), rank=4, modalities=("text", "image"))
    _perturb(model)
    x = torch.randn(2, 5, 32)
    mod = torch.tensor([[0, 0, 1, 1, 0], [1, 1, 1, 0, 0]])
    out = model.adapt(x, mod)
    torch.testing.assert_close(out[0, 2], model.adapters["image"](x[0, 2]))
    torch.testing.assert_close(out[1, 4], model.adapters["text"](x[1, 4]))
    with pytest.raises(ValueError, match="modality_ids are needed"):
        model.adapt(x)


def test_save_load_round_trip_writes_the_adapter_alone(tmp_path: Path) -> None:
    model = AdaLinkModel(tiny_llama(), rank=4).eval()
    _perturb(model)
    ids = _ids(2)
    expected = model(input_ids=ids).logits
    model.save_adapter(tmp_path)
    assert (tmp_path / WEIGHTS_FILE).stat().st_size < 2 * 2 * 32 * 4 * 4 + 1000  # two 32x4 float32 matrices + header
    restored = AdaLinkModel.from_adapter(tiny_llama(), tmp_path).eval()
    assert torch.equal(restored(input_ids=ids).logits, expected)


def test_loading_an_adapter_onto_a_model_of_another_width_fails(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    AdaLinkModel(tiny_llama(), rank=4).save_adapter(tmp_path)
    wider = LlamaForCausalLM(LlamaConfig(vocab_size=257, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ValueError, match="hidden size 32"):
        AdaLinkModel.from_adapter(wider, tmp_path)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="rank"):
        AdaLinkModel(tiny_llama(), rank=0)
    with pytest.raises(ValueError, match="activation"):
        AdaLinkModel(tiny_llama(), rank=2, activation="tanh")
    with pytest.raises(ValueError, match="exactly one"):
        AdaLinkModel(tiny_llama(), rank=2)()
