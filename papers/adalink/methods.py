"""The four ways to adapt a causal LM that the paper compares: AdaLink, LoRA, prompt tuning (both via peft), full FT."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from papers.adalink.adalink import AdaLinkModel

METHODS = ("adalink", "lora", "lora_paper", "prompt_tuning", "full_ft", "zero_shot")
PEFT_METHODS = ("lora", "lora_paper", "prompt_tuning")


def lora_params_per_rank(base: PreTrainedModel, targets: list[str]) -> int:
    """Trainable LoRA parameters per unit of rank: (in + out) features summed over the targeted linears."""
    total = sum(m.in_features + m.out_features for name, m in base.named_modules()
                if isinstance(m, nn.Linear) and name.split(".")[-1] in targets)
    if total == 0:
        raise ValueError(f"no nn.Linear named {targets} in {type(base).__name__}")
    return total


def matched_lora_rank(base: PreTrainedModel, targets: list[str], budget: int) -> int:
    """The LoRA rank whose parameter count is closest to ``budget`` (AdaLink's), at least 1."""
    return max(1, round(budget / lora_params_per_rank(base, targets)))


def adalink_param_count(hidden: int, rank: int, n_modalities: int = 1) -> int:
    return n_modalities * 2 * hidden * rank  # W_down (r x d) and W_up (d x r), no biases


def build(method: str, base: PreTrainedModel, *, adalink_rank: int, adalink_activation: str = "identity",
          lora_rank: int = 0, lora_alpha: float = 0.0, lora_targets: tuple[str, ...] = ("q_proj", "v_proj"),
          lora_dropout: float = 0.0, prompt_tokens: int = 20) -> nn.Module:
    """``base`` made trainable the ``method`` way (base weights frozen except for full fine-tuning).

    ``lora_rank=0`` matches LoRA's parameter count to AdaLink's at ``adalink_rank``; ``lora_alpha=0`` is 2 x rank.
    """
    if method == "adalink":
        return AdaLinkModel(base, adalink_rank, ("text",), adalink_activation)
    if method in ("lora", "lora_paper"):
        hidden = base.get_input_embeddings().embedding_dim
        rank = lora_rank or matched_lora_rank(base, list(lora_targets), adalink_param_count(hidden, adalink_rank))
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=lora_alpha or 2 * rank,
                            target_modules=list(lora_targets), lora_dropout=lora_dropout, bias="none")
        return get_peft_model(base, config)
    if method == "prompt_tuning":
        # Lester et al. (2021): soft prompt initialised from embeddings of sampled vocabulary tokens
        config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt_tokens,
                                    prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
        return get_peft_model(base, config)
    if method == "full_ft":
        return base.requires_grad_(True)
    if method == "zero_shot":
        return base.requires_grad_(False)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def position_offset(model: nn.Module) -> int:
    """Positions prepended to every sequence (prompt tuning's virtual tokens), 0 otherwise."""
    if isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning:
        return model.active_peft_config.num_virtual_tokens
    return 0


def answer_logits(model: nn.Module, batch: dict[str, torch.Tensor], offset: int | None = None) -> torch.Tensor:
    """Next-token logits (batch, vocab) at each row's last prompt position; the LM head runs on those alone.

    ``offset``: positions prepended by the model (default: read from ``model``; pass it for a DDP-wrapped model).
    """
    offset = position_offset(model) if offset is None else offset
    keep = (batch["last"] + offset).unsqueeze(1)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep, use_cache=False)
    return out.logits[:, 0, :]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def save_trained(method: str, model: nn.Module, directory: Path, save_full_model: bool) -> Path | None:
    """The adapted part alone: AdaLink / peft adapters (small); full FT writes the whole model only if asked."""
    if method == "adalink":
        return model.save_adapter(directory)
    if method in PEFT_METHODS:
        model.save_pretrained(directory)
        return directory
    if method == "full_ft" and save_full_model:
        model.save_pretrained(directory)
        return directory
    return None


def load_trained(method: str, base: PreTrainedModel, directory: Path) -> nn.Module:
    """Rebuild what ``save_trained`` wrote on top of a fresh base model."""
    if method == "adalink":
        return AdaLinkModel.from_adapter(base, directory)
    if method in PEFT_METHODS:
        return PeftModel.from_pretrained(base, directory)
    if method == "full_ft":
        return type(base).from_pretrained(directory, dtype=base.dtype)
    return base
