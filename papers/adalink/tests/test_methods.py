"""Baselines through peft, parameter matching, and the answer-position logits every method is scored on."""

import pytest
import torch

from papers.adalink.data import encode, load_synthetic
from papers.adalink.methods import (
    adalink_param_count,
    answer_logits,
    build,
    lora_params_per_rank,
    matched_lora_rank,
    trainable_parameters,
)
from papers.adalink.models import ByteTokenizer, tiny_llama


def _batch() -> dict[str, torch.Tensor]:
    rows = [({"text": "ab " * k}, k % 2) for k in (1, 4, 2, 6, 3)]  # rows of different lengths
    enc = encode(ByteTokenizer(), load_synthetic(10).spec, rows, max_field_tokens=64)
    return enc.rows(torch.arange(5))


def test_lora_parameter_count_matches_peft_and_the_adalink_budget() -> None:
    base = tiny_llama()
    per_rank = lora_params_per_rank(base, ["q_proj", "v_proj"])
    assert per_rank == 2 * ((32 + 32) + (32 + 16))  # 2 layers: q 32->32, v 32->16 (2 kv heads of 8)
    assert matched_lora_rank(base, ["q_proj", "v_proj"], adalink_param_count(32, 7)) == round(2 * 32 * 7 / per_rank)
    model = build("lora", base, adalink_rank=0, lora_rank=3)
    assert sum(p.numel() for p in trainable_parameters(model)) == 3 * per_rank


def test_each_method_trains_only_its_own_parameters() -> None:
    counts = {m: sum(p.numel() for p in trainable_parameters(build(m, tiny_llama(), adalink_rank=4, prompt_tokens=5)))
              for m in ("adalink", "prompt_tuning", "full_ft", "zero_shot")}
    assert counts == {"adalink": 2 * 32 * 4, "prompt_tuning": 5 * 32,
                      "full_ft": sum(p.numel() for p in tiny_llama().parameters()), "zero_shot": 0}
    with pytest.raises(ValueError, match="unknown method"):
        build("ia3", tiny_llama(), adalink_rank=4)


def test_answer_logits_of_a_padded_batch_equal_unpadded_single_rows() -> None:
    model = tiny_llama().eval()
    batch = _batch()
    assert len(set(batch["last"].tolist())) == 5 and batch["attention_mask"][0, -1] == 0  # right-padded
    with torch.no_grad():
        got = answer_logits(model, batch)
        for i in range(5):
            n = int(batch["last"][i]) + 1
            full = model(input_ids=batch["input_ids"][i : i + 1, :n]).logits[0, -1]
            torch.testing.assert_close(got[i], full, atol=1e-5, rtol=1e-5)


def test_prompt_tuning_logits_are_read_after_the_virtual_tokens() -> None:
    model = build("prompt_tuning", tiny_llama(), adalink_rank=4, prompt_tokens=3).eval()
    batch = _batch()
    with torch.no_grad():
        got = answer_logits(model, batch)
        prompt = model.get_prompt(batch_size=1)
        embed = model.get_input_embeddings()
        for i in range(5):
            n = int(batch["last"][i]) + 1
            x = torch.cat([prompt, embed(batch["input_ids"][i : i + 1, :n])], dim=1)
            want = model.base_model(inputs_embeds=x).logits[0, -1]
            torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)
