"""Pre-GNN initialisation (Hu et al. 2020; what PAR and PACIA start from): read a PyTorch GIN state dict in
Pre-GNN's layout (`supervised_contextpred.pth`) and convert it to the Flax ``GINEncoder`` (``gin_norm: batch``).

Pre-GNN layout, for layers l = 0..L-1 and width d: ``x_embedding1.weight`` (120, d) atom types,
``x_embedding2.weight`` (3, d) chirality, ``gnns.l.edge_embedding1.weight`` (6, d) bond types,
``gnns.l.edge_embedding2.weight`` (3, d) bond directions, ``gnns.l.mlp.0`` Linear(d, 2d), ``gnns.l.mlp.2``
Linear(2d, d), ``batch_norms.l.{weight,bias,running_mean,running_var}``. torch's Linear stores (out, in); Flax's
Dense kernel is (in, out).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from papers.himpp.featurize import NUM_ATOM_TYPES, NUM_BOND_DIRS, NUM_BOND_TYPES, NUM_CHIRALITY
from shared.data.registry import DataMissingError
from shared.runs.config import ConfigError

HOW_TO_GET = ("Pre-GNN's GIN checkpoint is model_gin/supervised_contextpred.pth of snap-stanford/pretrain-gnns "
              "(also shipped in LARS-research/PACIA chem_lib/model_gin/)")


def resolve_checkpoint_path(value: str) -> Path:
    """``value`` itself, or for ``"$VAR"`` the path in environment variable VAR (a clear error when unset)."""
    if value.startswith("$"):
        var = value[1:]
        if not os.environ.get(var):
            raise ConfigError(f"pretrained_gin={value}: environment variable {var} is not set. Set {var} to the Pre-GNN"
                              f" GIN checkpoint ({HOW_TO_GET}), or pass pretrained_gin=null gin_norm=layer to train "
                              f"from scratch")
        value = os.environ[var]
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataMissingError(f"Pre-GNN checkpoint {path} does not exist. {HOW_TO_GET}")
    return path


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A torch state dict (tensors only) as numpy arrays."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("gnn."): v.detach().numpy() for k, v in state.items() if hasattr(v, "detach")}


def convert_gin(state: Mapping[str, np.ndarray], layers: int, dim: int) -> dict[str, Any]:
    """Flax ``GINEncoder`` parameters (atom / chirality embeddings, convs_l, norms_l) from a Pre-GNN state dict."""

    def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in state:
            raise ValueError(f"Pre-GNN checkpoint has no {key!r} (is it a {layers}-layer GIN?)")
        value = np.asarray(state[key], dtype=np.float32)
        if value.shape != shape:
            raise ValueError(f"Pre-GNN checkpoint {key!r} has shape {value.shape}, expected {shape} "
                             f"(hidden={dim}, gin_layers={layers})")
        return value

    extra = sorted(k for k in state if k.startswith(("gnns.", "batch_norms.")) and int(k.split(".")[1]) >= layers)
    if extra:
        raise ValueError(f"Pre-GNN checkpoint has more than gin_layers={layers} layers ({extra[0]!r})")
    params: dict[str, Any] = {
        "atom_embed": {"embedding": get("x_embedding1.weight", (NUM_ATOM_TYPES, dim))},
        "chirality_embed": {"embedding": get("x_embedding2.weight", (NUM_CHIRALITY, dim))},
    }
    for layer in range(layers):
        conv, norm = f"gnns.{layer}.", f"batch_norms.{layer}."
        params[f"convs_{layer}"] = {  # GINConv: Dense_1 = inner Linear(d, 2d), Dense_0 = outer Linear(2d, d)
            "Embed_0": {"embedding": get(conv + "edge_embedding1.weight", (NUM_BOND_TYPES, dim))},
            "Embed_1": {"embedding": get(conv + "edge_embedding2.weight", (NUM_BOND_DIRS, dim))},
            "Dense_1": {"kernel": get(conv + "mlp.0.weight", (2 * dim, dim)).T, "bias": get(conv + "mlp.0.bias", (2 * dim,))},
            "Dense_0": {"kernel": get(conv + "mlp.2.weight", (dim, 2 * dim)).T, "bias": get(conv + "mlp.2.bias", (dim,))},
        }
        params[f"norms_{layer}"] = {"scale": get(norm + "weight", (dim,)), "bias": get(norm + "bias", (dim,)),
                                    "frozen_mean": get(norm + "running_mean", (dim,)),
                                    "frozen_var": get(norm + "running_var", (dim,))}
    return params


def pregnn_encoder(value: str, layers: int, dim: int) -> dict[str, Any]:
    """The converted encoder parameters of the checkpoint named by ``value`` (a path or ``"$VAR"``)."""
    return convert_gin(load_state_dict(resolve_checkpoint_path(value)), layers, dim)
