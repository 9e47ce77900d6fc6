"""Pre-GNN GIN checkpoint (PyTorch layout) -> Flax GINEncoder, checked on a random checkpoint against numpy."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from papers.himpp.config import HiMPPConfig
from papers.himpp.featurize import GraphCache, batch_graphs
from papers.himpp.model import BATCH_NORM_EPS, GINEncoder
from papers.himpp.pregnn import convert_gin, pregnn_encoder, resolve_checkpoint_path
from shared.data.registry import DataMissingError
from shared.runs.config import ConfigError

DIM, LAYERS = 6, 2


def random_pregnn_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with Pre-GNN's GNN key names and shapes (120 atom types, 3 chiralities, 6 bond types, 3 dirs)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    state = {"x_embedding1.weight": r(120, DIM), "x_embedding2.weight": r(3, DIM)}
    for i in range(LAYERS):
        state |= {f"gnns.{i}.mlp.0.weight": r(2 * DIM, DIM), f"gnns.{i}.mlp.0.bias": r(2 * DIM),
                  f"gnns.{i}.mlp.2.weight": r(DIM, 2 * DIM), f"gnns.{i}.mlp.2.bias": r(DIM),
                  f"gnns.{i}.edge_embedding1.weight": r(6, DIM), f"gnns.{i}.edge_embedding2.weight": r(3, DIM),
                  f"batch_norms.{i}.weight": r(DIM), f"batch_norms.{i}.bias": r(DIM),
                  f"batch_norms.{i}.running_mean": r(DIM), f"batch_norms.{i}.running_var": r(DIM).abs() + 0.5,
                  f"batch_norms.{i}.num_batches_tracked": torch.tensor(7)}
    return state


def numpy_pregnn(state: dict[str, np.ndarray], g) -> np.ndarray:
    """Pre-GNN's GNN forward in eval mode (JK=last) and mean pooling, written from its description."""
    h = state["x_embedding1.weight"][g.atom] + state["x_embedding2.weight"][g.chirality]
    for i in range(LAYERS):
        p = f"gnns.{i}."
        msg = h[g.src] + state[p + "edge_embedding1.weight"][g.bond_type] + state[p + "edge_embedding2.weight"][g.bond_dir]
        agg = np.zeros_like(h)
        np.add.at(agg, g.dst, msg)
        hid = np.maximum(agg @ state[p + "mlp.0.weight"].T + state[p + "mlp.0.bias"], 0.0)
        h = hid @ state[p + "mlp.2.weight"].T + state[p + "mlp.2.bias"]
        b = f"batch_norms.{i}."
        h = (h - state[b + "running_mean"]) / np.sqrt(state[b + "running_var"] + BATCH_NORM_EPS) \
            * state[b + "weight"] + state[b + "bias"]
        if i < LAYERS - 1:
            h = np.maximum(h, 0.0)
    n_graphs = g.graph_mask.shape[0]
    return np.stack([h[g.node_graph == j].mean(0) for j in range(n_graphs)])


def test_converted_checkpoint_reproduces_pregnn(tmp_path: Path) -> None:
    state = random_pregnn_state()
    path = tmp_path / "supervised_contextpred.pth"
    torch.save(state, path)
    params = pregnn_encoder(str(path), LAYERS, DIM)
    g = batch_graphs([GraphCache()(s) for s in ("C[C@H](N)C(=O)O", "c1ccccc1O", "C/C=C/Cl")], 64, 192)
    encoder = GINEncoder(DIM, LAYERS, 0.0, 4, False, "batch")
    ours = np.asarray(encoder.apply({"params": params}, g)[0])
    reference = numpy_pregnn({k: v.numpy() for k, v in state.items()}, g)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    # the tree matches a freshly initialised encoder's, so train() can merge it
    fresh = encoder.init(jax.random.key(0), g)["params"]
    assert jax.tree.structure(fresh) == jax.tree.structure(params)


def test_bad_checkpoints_are_named() -> None:
    state = {k: v.numpy() for k, v in random_pregnn_state().items()}
    with pytest.raises(ValueError, match="shape"):
        convert_gin(state, LAYERS, DIM + 1)
    with pytest.raises(ValueError, match="more than gin_layers=1"):
        convert_gin(state, 1, DIM)
    del state["gnns.1.mlp.2.bias"]
    with pytest.raises(ValueError, match="gnns.1.mlp.2.bias"):
        convert_gin(state, LAYERS, DIM)


def test_checkpoint_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREGNN_GIN_CHECKPOINT", raising=False)
    with pytest.raises(ConfigError, match="PREGNN_GIN_CHECKPOINT is not set"):
        resolve_checkpoint_path("$PREGNN_GIN_CHECKPOINT")
    monkeypatch.setenv("PREGNN_GIN_CHECKPOINT", str(tmp_path / "missing.pth"))
    with pytest.raises(DataMissingError, match="does not exist"):
        resolve_checkpoint_path("$PREGNN_GIN_CHECKPOINT")
    (tmp_path / "x.pth").write_bytes(b"")
    monkeypatch.setenv("PREGNN_GIN_CHECKPOINT", str(tmp_path / "x.pth"))
    assert resolve_checkpoint_path("$PREGNN_GIN_CHECKPOINT") == tmp_path / "x.pth"


def test_pretrained_gin_needs_batch_norm() -> None:
    with pytest.raises(ValueError, match="gin_norm: batch"):
        HiMPPConfig(pretrained_gin="$PREGNN_GIN_CHECKPOINT")
