"""AdaLink (Wang et al. 2023, Sec. 3): per-modality low-rank residual adapters on the input embeddings of a frozen LM.

    model = AdaLinkModel(AutoModelForCausalLM.from_pretrained(...), rank=64)   # base frozen, adapters zero-init
    out = model(input_ids=ids, attention_mask=mask)                            # same outputs as the base at step 0
    model.save_adapter("adapter/")                                            # a few hundred kB; the base is untouched

The base model's weights and forward are never modified: the adapter only turns token ids (or embeddings a caller
brings, e.g. from a vision encoder) into adapted ``inputs_embeds``, which then go through the unchanged model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "gelu": nn.GELU}
CONFIG_FILE, WEIGHTS_FILE = "adalink_config.json", "adalink_adapter.safetensors"


@dataclasses.dataclass(frozen=True)
class AdaLinkConfig:
    hidden_size: int
    rank: int = 64
    modalities: tuple[str, ...] = ("text",)
    activation: str = "identity"

    def __post_init__(self) -> None:
        if self.rank <= 0 or self.hidden_size <= 0:
            raise ValueError(f"rank and hidden_size must be positive, got {self.rank} and {self.hidden_size}")
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct and non-empty, got {self.modalities}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")


class LowRankAdapter(nn.Module):
    """x + W_up f(W_down x) (Sec. 3, the AdaLink module); W_up starts at zero so the adapter starts as the identity."""

    def __init__(self, hidden_size: int, rank: int, activation: str = "identity") -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, rank, bias=False)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(rank, hidden_size, bias=False)
        nn.init.zeros_(self.up.weight)  # zero-initialised up-projection: the frozen model's outputs at step 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class AdaLinkModel(nn.Module):
    """A frozen causal LM behind one AdaLink adapter per input modality; only the adapters are trainable."""

    def __init__(self, base: PreTrainedModel, rank: int = 64, modalities: tuple[str, ...] = ("text",),
                 activation: str = "identity") -> None:
        super().__init__()
        self.config = AdaLinkConfig(base.get_input_embeddings().embedding_dim, rank, tuple(modalities), activation)
        self.base = base
        self.base.requires_grad_(False)
        embed_dtype = base.get_input_embeddings().weight.dtype
        self.adapters = nn.ModuleDict({m: LowRankAdapter(self.config.hidden_size, rank, activation) for m in modalities})
        self.adapters.to(dtype=torch.float32 if embed_dtype in (torch.float16, torch.bfloat16) else embed_dtype)

    def adapt(self, inputs_embeds: torch.Tensor, modality_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Each token's embedding through the adapter of its modality (``modality_ids`` index ``config.modalities``)."""
        if modality_ids is None:
            if len(self.adapters) != 1:
                raise ValueError(f"modality_ids are needed with several modalities {self.config.modalities}")
            modality_ids = torch.zeros(inputs_embeds.shape[:-1], dtype=torch.long, device=inputs_embeds.device)
        x = inputs_embeds.to(self.adapters[self.config.modalities[0]].down.weight.dtype)
        out = torch.zeros_like(x)
        for index, name in enumerate(self.config.modalities):
            mask = (modality_ids == index).unsqueeze(-1)
            out = out + mask * self.adapters[name](x)
        return out.to(inputs_embeds.dtype)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                modality_ids: torch.Tensor | None = None, **kwargs: object) -> object:
        """The base model's forward on adapted input embeddings; other keyword arguments go to the base as they are."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.base.get_input_embeddings()(input_ids)
        return self.base(inputs_embeds=self.adapt(inputs_embeds, modality_ids), **kwargs)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.adapters.state_dict().items()}

    def save_adapter(self, directory: str | Path) -> Path:
        """Write the adapters alone (config json + safetensors); the base model is not copied."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.config), indent=2))
        save_file(self.adapter_state_dict(), str(directory / WEIGHTS_FILE))
        return directory

    @classmethod
    def from_adapter(cls, base: PreTrainedModel, directory: str | Path) -> AdaLinkModel:
        """Wrap ``base`` with adapters saved by ``save_adapter``; a config that does not fit the base is an error."""
        directory = Path(directory)
        config = AdaLinkConfig(**{**json.loads((directory / CONFIG_FILE).read_text())})
        width = base.get_input_embeddings().embedding_dim
        if config.hidden_size != width:
            raise ValueError(f"adapter in {directory} is for hidden size {config.hidden_size}, the base model has {width}")
        model = cls(base, config.rank, tuple(config.modalities), config.activation)
        model.adapters.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return model
