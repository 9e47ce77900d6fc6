"""Self-supervised attribute masking (Hu et al. 2020, Pre-GNN) on the TRAINING tasks' molecules only: a stand-in
for the official `supervised_contextpred.pth` weights, which cannot be had offline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from papers.himpp.featurize import NUM_ATOM_TYPES, GraphBatch, GraphCache, batch_graphs, batch_size_of, bucket
from papers.himpp.model import GINEncoder
from shared.data.molecules import FewShotBenchmark
from shared.runs import load_checkpoint, save_checkpoint

MASK_ATOM = NUM_ATOM_TYPES - 1  # the spare atom slot; real atoms use 0..118


class AtomMasking(nn.Module):
    """Unmodulated GIN encoder plus a linear head predicting the masked atoms' types."""

    dim: int
    layers: int
    dropout: float
    norm: str = "layer"

    @nn.compact
    def __call__(self, g: GraphBatch, train: bool = False) -> jax.Array:
        h, _ = GINEncoder(self.dim, self.layers, self.dropout, 1, False, self.norm, name="encoder")(
            g, train=train, return_nodes=True)
        return nn.Dense(NUM_ATOM_TYPES, name="head")(h)


def mask_atoms(g: GraphBatch, rate: float, rng: np.random.Generator) -> tuple[GraphBatch, np.ndarray]:
    """Replace a ``rate`` fraction of the real atoms by the mask token; returns the batch and the 0/1 mask."""
    real = g.node_graph < g.graph_mask.shape[0]
    masked = real & (rng.random(real.shape) < rate)
    masked[np.flatnonzero(real)[0]] = True  # at least one target per batch
    return g._replace(atom=np.where(masked, MASK_ATOM, g.atom).astype(np.int32)), masked.astype(np.float32)


def training_smiles(bench: FewShotBenchmark) -> list[str]:
    """Unique molecules of the meta-training tasks (never the test tasks')."""
    return sorted({s for t in bench.train_tasks for s in bench.tasks[t].smiles})


def pretrain_encoder(smiles: Sequence[str], dim: int, layers: int, dropout: float, steps: int, batch: int,
                     lr: float, seed: int, cache: GraphCache, ckpt: Path | None = None,
                     progress: bool = True, norm: str = "layer") -> tuple[Any, list[float]]:
    """Attribute-masking pretraining (15% of atoms); returns the encoder's parameters and the loss curve."""
    model = AtomMasking(dim, layers, dropout, norm)
    optimizer = optax.adam(lr)
    rng = np.random.default_rng(seed)

    def sample() -> tuple[GraphBatch, np.ndarray, np.ndarray]:
        graphs = [cache(smiles[i]) for i in rng.choice(len(smiles), size=batch, replace=False)]
        nodes, edges = batch_size_of([graphs])  # powers of two, at least 64 / 192 per molecule: few recompiles
        g = batch_graphs(graphs, max(nodes, bucket(64 * batch - 1)), max(edges, bucket(192 * batch - 1)))
        target = g.atom.copy()
        g, mask = mask_atoms(g, 0.15, rng)
        return g, target, mask

    def loss_fn(params, g, target, mask, key):  # Pre-GNN attribute masking: CE on the masked atoms' types
        logits = model.apply({"params": params}, g, train=True, rngs={"dropout": key})
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
        return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    @jax.jit
    def step_fn(params, opt_state, g, target, mask, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, g, target, mask, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        params, opt_state, start, losses = state["params"], state["opt_state"], state["step"], state["losses"]
        rng.bit_generator.state = state["rng"]
    else:
        g, _, _ = sample()
        key = jax.random.key(seed)
        params = model.init({"params": key, "dropout": key}, g)["params"]
        opt_state, start, losses = optimizer.init(params), 0, []
    base = jax.random.key(seed + 1)
    for step in tqdm(range(start, steps), desc="pretrain (attribute masking)", disable=not progress, leave=False):
        params, opt_state, loss = step_fn(params, opt_state, *sample(), jax.random.fold_in(base, step))
        losses.append(float(loss))
        if ckpt is not None and ((step + 1) % 100 == 0 or step + 1 == steps):
            save_checkpoint(ckpt, {"params": jax.device_get(params), "opt_state": jax.device_get(opt_state),
                                   "step": step + 1, "rng": rng.bit_generator.state, "losses": losses})
    encoder = dict(params["encoder"])
    return encoder, losses
