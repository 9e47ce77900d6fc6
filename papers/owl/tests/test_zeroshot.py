"""Zero-shot accuracy through lm-evaluation-harness on a local fixture task, checked against log-likelihoods
computed here by hand from the model's logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from papers.owl import evaluate
from papers.owl.zeroshot import zero_shot
from shared.data.models import smollm2_float32_dir
from shared.runs import UserError

QUESTIONS = [
    ("What colour is the sky on a clear day?", ["blue", "green", "red"], 0),
    ("How many legs has a spider?", ["six", "eight", "ten"], 1),
    ("Which gas do plants take in?", ["oxygen", "helium", "carbon dioxide"], 2),
    ("What is frozen water called?", ["ice", "steam", "sand"], 0),
    ("Which animal barks?", ["cat", "dog", "fish"], 1),
    ("What do bees make?", ["milk", "silk", "honey"], 2),
]


def write_task(folder: Path, name: str, data: Path) -> None:
    """An ARC-style multiple-choice task read from a local JSON-lines file (no network)."""
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: "{{label}}"\ndoc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder of two task YAMLs: tiny_mc with its data, tiny_missing whose data file does not exist."""
    folder = tmp_path_factory.mktemp("tasks")
    data = folder / "tiny_mc.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "label": y}) + "\n" for q, c, y in QUESTIONS))
    write_task(folder, "tiny_mc", data)
    write_task(folder, "tiny_missing", folder / "absent.jsonl")
    return str(folder)


@pytest.fixture(scope="module")
def tiny_lm() -> tuple[LlamaForCausalLM, object]:
    tokenizer = AutoTokenizer.from_pretrained(smollm2_float32_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval(), tokenizer


def by_hand(model: LlamaForCausalLM, tokenizer) -> tuple[float, float]:
    """acc / acc_norm from sum log p(continuation | context), continuation ' ' + choice, norm by its bytes."""
    hits = hits_norm = 0
    for question, choices, label in QUESTIONS:
        context = f"Question: {question}\nAnswer:"
        lls = []
        for choice in choices:
            ctx = tokenizer(context, add_special_tokens=False).input_ids
            whole = tokenizer(context + " " + choice, add_special_tokens=False).input_ids
            with torch.no_grad():
                logp = model(torch.tensor([whole])).logits[0].log_softmax(-1)
            lls.append(sum(float(logp[i - 1, whole[i]]) for i in range(len(ctx), len(whole))))
        norm = [ll / len((" " + c).encode()) for ll, c in zip(lls, choices)]
        hits += max(range(len(choices)), key=lls.__getitem__) == label
        hits_norm += max(range(len(choices)), key=norm.__getitem__) == label
    return hits / len(QUESTIONS), hits_norm / len(QUESTIONS)


def test_lm_eval_accuracy_equals_hand_computed_log_likelihoods(tiny_lm, tasks: str) -> None:
    model, tokenizer = tiny_lm
    got = zero_shot(model, tokenizer, ["tiny_mc"], include_path=tasks, batch_size=4)["tiny_mc"]
    acc, acc_norm = by_hand(model, tokenizer)
    assert got["acc"] == pytest.approx(acc) and got["acc_norm"] == pytest.approx(acc_norm)
    assert got["acc_stderr"] > 0


def test_unknown_task_and_missing_data_are_user_errors(tiny_lm, tasks: str) -> None:
    model, tokenizer = tiny_lm
    with pytest.raises(UserError, match="unknown lm-eval task"):
        zero_shot(model, tokenizer, ["no_such_task"], include_path=tasks)
    with pytest.raises(UserError, match="could not be loaded"):
        zero_shot(model, tokenizer, ["tiny_missing"], include_path=tasks)


def test_evaluate_entry_point_reports_zero_shot_accuracy(tasks: str, tmp_path: Path) -> None:
    smoke = Path(__file__).parents[1] / "configs" / "smoke.yaml"
    common = ["--config", str(smoke), "--out", str(tmp_path), "method=dense", "zero_shot_tasks=[tiny_mc]",
              f"zero_shot_include={tasks}"]
    with pytest.raises(UserError, match="need a model with a tokenizer"):
        evaluate.main(common)  # smoke's tiny_llama is byte-level
    metrics = evaluate.main([*common, "model=smollm2_135m_instruct", "eval_tokens=512", "eval_window=512"])
    scores = json.loads((tmp_path / "eval.json").read_text())["zero_shot"]["tiny_mc"]
    assert scores == metrics["zero_shot"]["tiny_mc"] and 0.0 <= scores["acc"] <= 1.0
    assert scores["acc"] >= 0.5  # SmolLM2-135M-Instruct knows most of these; chance is 1/3
