"""ModuleFormer as a transformers causal LM: stick-breaking mixture-of-attention heads and feed-forward experts.

Equations are cited from arXiv 2306.04640; where the official code (IBM/ModuleFormer) differs, it is followed and
the README says so. Module and parameter names are the official ones (``attn.q_proj``, ``mlpf``, ``gate.w_gate``),
so a released MoLM state dict loads as is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, GenerationMixin, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration import ModuleFormerConfig

# constant buffers of the official attention module (tril masks) that released checkpoints carry; we rebuild them
OFFICIAL_BUFFERS = (r"attn\.mask$", r"attn\.cum_weight$")


def stick_breaking_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """att_ij = z_ij * prod_{j<m<=i} (1 - z_im), z = sigmoid(q_i.k_j / sqrt(d)) (Sec. 3.1); no softmax, no positions.

    q: (..., T, D) for the last T of S positions; k, v: (..., S, D); key_mask: bool, broadcastable to (..., T, S),
    False for padding. Computed in log space; mass not assigned to any key is dropped, as in the official code.
    """
    t, s = q.shape[-2], k.shape[-2]
    logits = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1])
    causal = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - t, s, device=q.device)[:, None]
    allowed = causal if key_mask is None else causal & key_mask
    log_z = F.logsigmoid(logits).masked_fill(~allowed, float("-inf"))
    log_not_z = F.logsigmoid(-logits).masked_fill(~allowed, 0.0)
    after_j = log_not_z.flip(-1).cumsum(-1).flip(-1) - log_not_z  # sum over m > j (only m <= i are unmasked)
    return ((log_z + after_j).exp().to(v.dtype)) @ v


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + 1e-8)).sum(-1)


def mutual_information_loss(probs: torch.Tensor) -> torch.Tensor:
    """-(H(e) - H(e|x)) over the tokens of one call (Sec. 3.3): balances load while concentrating each token's choice."""
    return _entropy(probs).mean() - _entropy(probs.mean(0))


def load_concentration_loss(probs: torch.Tensor) -> torch.Tensor:
    """H(e) = -sum_m p(m) log p(m), p(m) the batch mean of p(m|x) (Sec. 3.3, fine-tuning): few experts take the load."""
    return _entropy(probs.mean(0))


AUX_LOSS = {"mi": mutual_information_loss, "load_concentration": load_concentration_loss}


@dataclasses.dataclass
class Routing:
    """Token/slot pairs sorted by expert: ``order`` indexes the flattened (N*k) slots, ``tokens`` their token."""

    order: torch.Tensor
    tokens: torch.Tensor
    expert_sizes: list[int]
    gates: torch.Tensor
    n_tokens: int
    k: int


class TopKGating(nn.Module):
    """The official 'mlp' gate (``w_gate``): Linear -> GELU -> Linear -> softmax; gates are the raw top-k probabilities.

    With ``sample_topk = s > 0`` and in training mode, the last s of the k experts are drawn from the remaining
    probabilities (multinomial on p + 1e-6 with the top k - s masked out), as the official gate does.
    """

    def __init__(self, d_in: int, n_experts: int, k: int, gating_size: int, dropout: float, sample_topk: int = 0) -> None:
        super().__init__()
        self.k, self.sample_topk = k, sample_topk
        self.w_gate = nn.Sequential(nn.Linear(d_in, gating_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(gating_size, n_experts, bias=False))

    def select(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gates, experts), both (N, k)."""
        if not (self.training and self.sample_topk):
            return probs.topk(self.k, dim=-1)  # no renormalisation (it is commented out officially)
        fixed = probs.topk(self.k - self.sample_topk, dim=-1).indices
        weights = (probs.detach() + 1e-6).scatter(1, fixed, 0.0)
        experts = torch.cat([fixed, torch.multinomial(weights, self.sample_topk)], dim=-1)
        return probs.gather(1, experts), experts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        probs = self.w_gate(x).float().softmax(-1)
        gates, experts = self.select(probs)
        flat = experts.reshape(-1)
        order = flat.argsort(stable=True)
        sizes = torch.bincount(flat, minlength=probs.shape[-1]).tolist()  # data-dependent: torch.compile breaks the graph here
        routing = Routing(order, order // self.k, sizes, gates.reshape(-1)[order].to(x.dtype), x.shape[0], self.k)
        return probs, routing


class ParallelExperts(nn.Module):
    """E linear maps applied to tokens already grouped by expert: one matrix product per expert, none per token.

    The weight is unbound into E views so that autograd's backward stacks E per-expert gradients once (O(E));
    indexing ``weight[e]`` instead would build and sum E full-size zero gradients (O(E^2)).
    """

    def __init__(self, n_experts: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, d_in, d_out).uniform_(-1 / d_in, 1 / d_in))

    def forward(self, x_sorted: torch.Tensor, expert_sizes: list[int]) -> torch.Tensor:
        chunks = x_sorted.split(expert_sizes)
        return torch.cat([chunk @ w for chunk, w in zip(chunks, self.weight.unbind(0), strict=True)])


class MoE(nn.Module):
    """A mixture of experts split into ``map`` (input -> k expert outputs) and ``reduce`` (gate-weighted sum back).

    With ``dense=True`` there is no gate: every expert runs on every token with weight 1, as one matrix product
    over all experts; this is how the dense baselines are built from the same modules.
    """

    def __init__(self, d_in: int, d_hidden: int, n_experts: int, k: int, gating_size: int, dropout: float,
                 dense: bool = False, sample_topk: int = 0, aux_loss_type: str = "mi") -> None:
        super().__init__()
        self.dense, self.aux_loss = dense, AUX_LOSS[aux_loss_type]
        self.k = n_experts if dense else k
        self.gate = None if dense else TopKGating(d_in, n_experts, k, gating_size, dropout, sample_topk)
        self.experts = ParallelExperts(n_experts, d_in, d_hidden)
        self.output_experts = ParallelExperts(n_experts, d_hidden, d_in)

    def map(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing | None, torch.Tensor]:
        """x (N, d_in) -> (N, k, d_hidden), the routing, and the auxiliary loss of this call."""
        if self.dense:
            return torch.einsum("nd,edh->neh", x, self.experts.weight), None, x.new_zeros((), dtype=torch.float32)
        probs, r = self.gate(x)
        h_sorted = self.experts(x[r.tokens], r.expert_sizes)
        h = torch.empty_like(h_sorted)
        h[r.order] = h_sorted
        return h.view(r.n_tokens, r.k, -1), r, self.aux_loss(probs)

    def reduce(self, h: torch.Tensor, r: Routing | None) -> torch.Tensor:
        """(N, k, d_hidden) -> (N, d_in): sum_i g_i(x) * E_i(h_i) over the k chosen experts (Sec. 3.2)."""
        if r is None:
            return torch.einsum("neh,ehd->nd", h, self.output_experts.weight)
        y = self.output_experts(h.reshape(r.n_tokens * r.k, -1)[r.order], r.expert_sizes) * r.gates[:, None]
        return torch.zeros(r.n_tokens, y.shape[-1], dtype=y.dtype, device=y.device).index_add(0, r.tokens, y)


def _moe(cfg: ModuleFormerConfig, d_hidden: int, n_experts: int, k: int) -> MoE:
    return MoE(cfg.n_embd, d_hidden, n_experts, k, cfg.gating_size, cfg.dropout, cfg.dense, cfg.sample_topk, cfg.aux_loss_type)


class ModuleFormerAttention(nn.Module):
    """Attention experts: an MoE query projection ``q_proj``; keys and values shared by all experts (as officially)."""

    def __init__(self, cfg: ModuleFormerConfig, n_experts: int) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.att_hidden // cfg.n_head
        self.q_proj = _moe(cfg, cfg.att_hidden, n_experts, cfg.k_att)
        identity = cfg.att_hidden == cfg.n_embd and cfg.n_head == 1
        self.k_proj = nn.Identity() if identity else nn.Linear(cfg.n_embd, cfg.att_hidden)
        self.v_proj = nn.Identity() if identity else nn.Linear(cfg.n_embd, cfg.att_hidden)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, cache: DynamicCache | None, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, routing, aux = self.q_proj.map(x.reshape(b * t, d))
        k = self.q_proj.k
        q = q.view(b, t, k, self.n_head, self.head_dim).permute(0, 2, 3, 1, 4)  # (B, k, H, T, Dh)
        keys = self.k_proj(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        values = self.v_proj(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        if cache is not None:
            keys, values = cache.update(keys, values, layer)
        mask = None if key_mask is None else key_mask[:, None, None, None, :].bool()
        out = stick_breaking_attention(q, keys[:, None], values[:, None], mask)  # (B, k, H, T, Dh)
        out = out.permute(0, 3, 1, 2, 4).reshape(b * t, k, -1)
        return self.q_proj.reduce(out, routing).view(b, t, d), aux


class ModuleFormerBlock(GradientCheckpointingLayer):
    """Pre-LN block: x + MoA(LN x), then x + MoE-MLP(LN x)."""

    def __init__(self, cfg: ModuleFormerConfig, layer: int) -> None:
        super().__init__()
        n_att, n_mlp = cfg.experts_in_layer(layer)
        self.layer = layer
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = ModuleFormerAttention(cfg, n_att)
        self.mlpf = _moe(cfg, cfg.ffd_hidden, n_mlp, cfg.k_mlp)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, cache: DynamicCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        attn_out, aux_attn = self.attn(self.ln_1(x), key_mask, cache, self.layer)
        x = x + self.drop(attn_out)
        b, t, d = x.shape
        h, routing, aux_mlp = self.mlpf.map(self.ln_2(x).reshape(b * t, d))
        x = x + self.drop(self.mlpf.reduce(F.gelu(h, approximate="tanh"), routing).view(b, t, d))
        return x, aux_attn + aux_mlp


@dataclasses.dataclass
class ModuleFormerOutput(CausalLMOutputWithPast):
    aux_loss: torch.Tensor | None = None


class LoadingError(RuntimeError):
    """A checkpoint whose keys do not match the model (a missing expert or gate would otherwise stay random)."""


class ModuleFormerPreTrainedModel(PreTrainedModel):
    config_class = ModuleFormerConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["ModuleFormerBlock"]
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = list(OFFICIAL_BUFFERS)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ParallelExperts):
            fan_in = module.weight.shape[1]
            nn.init.uniform_(module.weight, -1 / fan_in, 1 / fan_in)

    @classmethod
    def from_pretrained(cls, *args: object, **kwargs: object) -> ModuleFormerPreTrainedModel:
        """As transformers', but a missing or unexpected weight (other than the official tril buffers) is an error."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        bad = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if any(bad.values()):
            raise LoadingError(f"checkpoint does not match {cls.__name__}: " + "; ".join(f"{k}: {v[:8]}" for k, v in bad.items() if v))
        return (model, info) if want_info else model


class ModuleFormerModel(ModuleFormerPreTrainedModel):
    def __init__(self, config: ModuleFormerConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # no position embedding (Sec. 3.1)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(ModuleFormerBlock(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: DynamicCache | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(final hidden states, summed auxiliary loss, the hidden states entering each block plus the final ones)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.drop(self.wte(input_ids) if inputs_embeds is None else inputs_embeds)
        aux = x.new_zeros((), dtype=torch.float32)
        states = []
        for block in self.h:
            states.append(x)
            x, block_aux = block(x, key_mask=attention_mask, cache=cache)
            aux = aux + block_aux
        x = self.ln_f(x)
        return x, aux, (*states, x) if output_hidden_states else None


class ModuleFormerForCausalLM(ModuleFormerPreTrainedModel, GenerationMixin):
    def __init__(self, config: ModuleFormerConfig) -> None:
        super().__init__(config)
        self.transformer = ModuleFormerModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied, as officially
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: object,
    ) -> ModuleFormerOutput:
        """``position_ids`` / ``cache_position`` from ``generate`` are ignored: the model has no positions (Sec. 3.1).

        A cache passed in (``cache``, or the older name ``past_key_values``) is always updated and returned;
        ``use_cache=False`` together with a cache is an error. Under gradient checkpointing in training no cache is
        built (the recomputed forward would append to it twice).
        """
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)
        if cache is not None and use_cache is False:
            raise ValueError("a cache was passed with use_cache=False; drop one of them")
        checkpointing = self.transformer.gradient_checkpointing and self.training
        if cache is not None and checkpointing:
            raise ValueError("a cache cannot be used with gradient checkpointing in training mode")
        use_cache = cache is not None or (not checkpointing and (use_cache if use_cache is not None else self.config.use_cache))
        if use_cache and cache is None:
            cache = DynamicCache()
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        hidden, aux, states = self.transformer(input_ids, attention_mask, cache, inputs_embeds, output_hidden_states)
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:  # next-token cross-entropy plus the weighted auxiliary loss (Sec. 3.3)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
            loss = loss + self.config.aux_loss_weight * aux
        return ModuleFormerOutput(loss=loss, logits=logits, cache=cache, hidden_states=states, aux_loss=aux)


AutoConfig.register("moduleformer", ModuleFormerConfig, exist_ok=True)
AutoModelForCausalLM.register(ModuleFormerConfig, ModuleFormerForCausalLM, exist_ok=True)
ModuleFormerConfig.register_for_auto_class()
ModuleFormerForCausalLM.register_for_auto_class("AutoModelForCausalLM")
