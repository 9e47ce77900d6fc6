"""The ModuleFormer config, a transformers PretrainedConfig registered with AutoConfig."""

from __future__ import annotations

from typing import ClassVar

from transformers import PretrainedConfig

AUX_LOSSES = ("mi", "load_concentration")
# keys of the official config.json that this implementation supports only at one value
_OFFICIAL_FIXED = {"gate_type": "mlp", "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                   "attn_pdrop": 0.0, "moe_pdrop": 0.0, "tie_word_embeddings": False}


class ModuleFormerConfig(PretrainedConfig):
    """Field names follow the official MoLM config.json (n_embd, n_layer, att_hidden, ffd_hidden, sample_topk, ...).

    Ours: ``dense=True`` drops the gates and runs every expert on every token (the dense baselines);
    ``att_experts_per_layer`` / ``mlp_experts_per_layer`` (None = ``n_att_experts`` / ``n_mlp_experts`` in every
    layer) record the expert counts of pruned or extended models; ``aux_loss_type`` adds "load_concentration".
    Official keys that we support at one value only (``gate_type``, ``activation_function``, the dropouts) raise if
    a config.json sets them otherwise; ``history_length`` is accepted and unused (our cache is not truncated).
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
        sample_topk: int = 0,
        aux_loss_type: str = "mi",
        aux_loss_weight: float = 0.0,
        att_experts_per_layer: list[int] | None = None,
        mlp_experts_per_layer: list[int] | None = None,
        dense: bool = False,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        bos_token_id: int = 50256,
        eos_token_id: int = 50256,
        **kwargs,
    ) -> None:
        for key, value in _OFFICIAL_FIXED.items():
            if kwargs.get(key, value) != value:
                raise ValueError(f"{key}={kwargs[key]!r} is not supported (only {value!r})")
        if att_hidden % n_head:
            raise ValueError(f"att_hidden ({att_hidden}) must be divisible by n_head ({n_head})")
        if aux_loss_type not in AUX_LOSSES:
            raise ValueError(f"aux_loss_type must be one of {AUX_LOSSES}, got {aux_loss_type!r}")
        if not 0 <= sample_topk <= min(k_att, k_mlp):
            raise ValueError(f"need 0 <= sample_topk <= min(k_att, k_mlp), got {sample_topk}")
        att = att_experts_per_layer or [n_att_experts] * n_layer
        mlp = mlp_experts_per_layer or [n_mlp_experts] * n_layer
        if len(att) != n_layer or len(mlp) != n_layer:
            raise ValueError(f"att/mlp_experts_per_layer need one count per layer ({n_layer})")
        if not (0 < k_att <= min(att) and 0 < k_mlp <= min(mlp)):
            raise ValueError("need 0 < k_att <= n_att_experts and 0 < k_mlp <= n_mlp_experts in every layer")
        kwargs.pop("tie_word_embeddings", None)
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
        self.sample_topk = sample_topk
        self.aux_loss_type = aux_loss_type
        self.aux_loss_weight = aux_loss_weight
        self.att_experts_per_layer = att_experts_per_layer
        self.mlp_experts_per_layer = mlp_experts_per_layer
        self.dense = dense
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        super().__init__(bos_token_id=bos_token_id, eos_token_id=eos_token_id, tie_word_embeddings=False, **kwargs)

    def experts_in_layer(self, layer: int) -> tuple[int, int]:
        """(attention experts, MLP experts) of block ``layer``."""
        att = self.att_experts_per_layer[layer] if self.att_experts_per_layer else self.n_att_experts
        mlp = self.mlp_experts_per_layer[layer] if self.mlp_experts_per_layer else self.n_mlp_experts
        return att, mlp
