"""The language models OWL prunes: SmolLM2 (GGUF dequantised once to float32), any hub/local causal LM, tiny
random models of five families (tests and smoke runs) and a random LLaMA-7B-shaped model (GPU check)."""

from __future__ import annotations

import torch
from transformers import (
    AutoTokenizer,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from papers.owl.offload import offload_blocks, should_offload
from shared.accel import pick_device
from shared.data.models import smollm2_float32_dir

SMOLLM2 = "smollm2_135m_instruct"
TINY_MODELS = ("tiny_llama", "tiny_opt", "tiny_mistral", "tiny_qwen2", "tiny_gptneox")
RANDOM_LLAMA7B = "random_llama7b"  # LLaMA-7B's shape, random weights: the GPU check where no weights are available
MODELS = (SMOLLM2, *TINY_MODELS, RANDOM_LLAMA7B)
HF_PREFIX = "hf:"  # hf:<hub id or local folder>, e.g. hf:huggyllama/llama-7b for the paper's model
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def is_known_model(name: str) -> bool:
    return name in MODELS or (name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX))


def load_hf_model(ref: str, dtype: torch.dtype = torch.float16) -> tuple[PreTrainedModel, object]:
    """A causal LM and tokenizer through transformers (the hub, its cache or a local folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load model {ref!r}: {err}. Give a local folder or a hub id this machine can reach "
            f"(offline here: use {SMOLLM2!r})"
        ) from err
    return model.eval(), tokenizer


TINY_VOCAB = 256  # the tiny models read bytes



def load_smollm2() -> tuple[PreTrainedModel, object]:
    """The float32 SmolLM2-135M-Instruct and its tokenizer, converting the GGUF on first use."""
    dest = smollm2_float32_dir()
    model = LlamaForCausalLM.from_pretrained(dest, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(dest)
    return model.eval(), tokenizer


def tiny_model(name: str, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised 4-block model of one family over a byte vocabulary (no download)."""
    torch.manual_seed(seed)
    common = dict(vocab_size=TINY_VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                  max_position_embeddings=256)
    if name == "tiny_llama":
        return LlamaForCausalLM(LlamaConfig(**common, intermediate_size=128, num_key_value_heads=2)).eval()
    if name == "tiny_mistral":  # sliding-window attention
        config = MistralConfig(**common, intermediate_size=128, num_key_value_heads=2, sliding_window=32)
        return MistralForCausalLM(config).eval()
    if name == "tiny_qwen2":  # biases on q/k/v
        return Qwen2ForCausalLM(Qwen2Config(**common, intermediate_size=128, num_key_value_heads=2)).eval()
    if name == "tiny_gptneox":  # fused query_key_value, parallel residual
        return GPTNeoXForCausalLM(GPTNeoXConfig(**common, intermediate_size=128)).eval()
    if name == "tiny_opt":
        config = OPTConfig(**common, ffn_dim=128, word_embed_proj_dim=64, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2)
        return OPTForCausalLM(config).eval()
    raise ValueError(f"unknown tiny model {name!r}; choose one of {TINY_MODELS}")


def random_llama7b(device: torch.device, dtype: torch.dtype, seed: int = 0) -> PreTrainedModel:
    """LLaMA-7B's architecture (32 blocks, hidden 4096, MLP 11008, vocab 32000) with random weights, built on
    ``device`` in ``dtype`` (6.7e9 parameters: 13.5 GB in float16)."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, max_position_embeddings=2048)
    with torch.device(device):
        return LlamaForCausalLM._from_config(config, torch_dtype=dtype).eval()


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; naming CUDA on a machine without it is an error."""
    return pick_device("cpu" if device == "auto" and not torch.cuda.is_available() else device)


def load_model(name: str, seed: int = 0, device: str = "cpu", dtype: str = "float32",
               offload: str = "never") -> tuple[PreTrainedModel, object | None]:
    """A model in ``dtype`` on ``device`` and its tokenizer (None for the byte-level models). With offloading
    (``offload``: always / never / auto = 7B+ on CUDA) the decoder blocks stay on the CPU and the rest on ``device``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    target = resolve_device(device)
    if name == SMOLLM2:
        model, tokenizer = load_smollm2()
    elif name in TINY_MODELS:
        model, tokenizer = tiny_model(name, seed), None
    elif name == RANDOM_LLAMA7B:
        model, tokenizer = random_llama7b(target, DTYPES[dtype], seed), None
    elif is_known_model(name):
        model, tokenizer = load_hf_model(name.removeprefix(HF_PREFIX), DTYPES[dtype])
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {MODELS} or {HF_PREFIX}<hub id or folder>")
    model = model.to(dtype=DTYPES[dtype])
    if should_offload(model, target, offload):
        from papers.owl.sequential import find_decoder_blocks

        offload_blocks(model, find_decoder_blocks(model), target)
        return model, tokenizer
    return model.to(device=target), tokenizer
