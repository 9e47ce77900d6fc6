"""Base causal LMs: SmolLM2-135M-Instruct (GGUF dequantised once to float32), a tiny random LLaMA, or any HF model."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from shared.data.models import smollm2_float32_dir

SMOLLM2 = "smollm2_135m_instruct"
TINY = "tiny_llama"
RANDOM_1B = "random_llama_1b"  # Llama-3.2-1B's shape, random weights, byte vocabulary: GPU checks without the weights
HF_PREFIX = "hf:"  # hf:<hub id or local folder>, e.g. hf:meta-llama/Llama-3.2-1B-Instruct
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def is_known_model(name: str) -> bool:
    return name in (SMOLLM2, TINY, RANDOM_1B) or (name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX))


class ByteTokenizer:
    """A byte-level tokenizer for the tiny test model (ids 0-255 = bytes, 256 = pad)."""

    pad_token_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def tiny_llama(seed: int = 0) -> PreTrainedModel:
    """A randomly initialised 2-block LLaMA over bytes (no download): for tests and the smoke config."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=ByteTokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=ByteTokenizer.pad_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def random_llama_1b(seed: int = 0) -> PreTrainedModel:
    """Llama-3.2-1B's blocks (16 x 2048, 32 q / 8 kv heads, MLP 8192) over the byte vocabulary, randomly initialised."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=ByteTokenizer.vocab_size, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=2048, pad_token_id=ByteTokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def load_base_model(name: str, dtype: str = "float32", seed: int = 0) -> tuple[PreTrainedModel, object]:
    """A causal LM (on the CPU, in ``dtype``) and its tokenizer."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if name in (TINY, RANDOM_1B):
        return (tiny_llama if name == TINY else random_llama_1b)(seed).to(DTYPES[dtype]), ByteTokenizer()
    if name == SMOLLM2:
        dest = smollm2_float32_dir()
        ref = str(dest)
    elif is_known_model(name):
        ref = name.removeprefix(HF_PREFIX)
    else:
        raise ValueError(f"unknown model {name!r}; choose {SMOLLM2!r}, {TINY!r}, {RANDOM_1B!r} or {HF_PREFIX}<hub id or folder>")
    try:
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=DTYPES[dtype])
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except OSError as err:
        raise FileNotFoundError(f"cannot load model {ref!r}: {err}. Give a local folder or a hub id this machine can "
                                f"reach (offline here: {SMOLLM2!r})") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
