"""The ModuleFormer config, a transformers PretrainedConfig registered with AutoConfig."""

from __future__ import annotations

from typing import ClassVar

from transformers import PretrainedConfig


class ModuleFormerConfig(PretrainedConfig):
    """Field names follow the official MoLM config.json (n_embd, n_layer, att_hidden, ffd_hidden, ...).

    ``dense=True`` (ours) drops the gates and runs every expert on every token: the dense baselines.
    """

    model_type = "moduleformer"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "block_size",
    }

    def __init__(
        self,
        vocab_size: int = 50295,
        n_embd: int = 1024,
        n_layer: int = 24,
        n_head: int = 1,
        att_hidden: int = 1024,
        n_att_experts: int = 16,
        k_att: int = 2,
        ffd_hidden: int = 2048,
        n_mlp_experts: int = 32,
        k_mlp: int = 2,
        gating_size: int = 256,
        block_size: int = 512,
        aux_loss_weight: float = 0.0,
        dense: bool = False,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        bos_token_id: int = 50256,
        eos_token_id: int = 50256,
        **kwargs,
    ) -> None:
        if att_hidden % n_head:
            raise ValueError(f"att_hidden ({att_hidden}) must be divisible by n_head ({n_head})")
        if not (0 < k_att <= n_att_experts and 0 < k_mlp <= n_mlp_experts):
            raise ValueError("need 0 < k_att <= n_att_experts and 0 < k_mlp <= n_mlp_experts")
        self.vocab_size = vocab_size
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.att_hidden = att_hidden
        self.n_att_experts = n_att_experts
        self.k_att = k_att
        self.ffd_hidden = ffd_hidden
        self.n_mlp_experts = n_mlp_experts
        self.k_mlp = k_mlp
        self.gating_size = gating_size
        self.block_size = block_size
        self.aux_loss_weight = aux_loss_weight
        self.dense = dense
        self.dropout = dropout
        self.initializer_range = initializer_range
        super().__init__(bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
