"""Attribute-masking pretraining: masks real atoms only, and its encoder drops into every method's encoder."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from papers.himpp.featurize import batch_graphs, smiles_to_graph
from papers.himpp.pretrain import MASK_ATOM, mask_atoms, pretrain_encoder, training_smiles
from papers.himpp.training import init_params, make_model


def test_mask_atoms_touches_only_real_atoms() -> None:
    g = batch_graphs([smiles_to_graph(s) for s in ("CCO", "c1ccccc1")] * 20)
    masked, mask = mask_atoms(g, 0.5, np.random.default_rng(0))
    real = g.node_graph < len(g.graph_mask)
    assert mask[~real].sum() == 0 and 0.3 < mask[real].mean() < 0.7
    assert (masked.atom[mask == 1] == MASK_ATOM).all() and (masked.atom[mask == 0] == g.atom[mask == 0]).all()


def test_pretrained_encoder_fits_the_few_shot_model(smoke_cfg, sider, cache) -> None:
    smiles = training_smiles(sider)
    assert set(smiles) == {s for t in sider.train_tasks for s in sider.tasks[t].smiles}
    encoder, losses = pretrain_encoder(smiles, smoke_cfg.hidden, smoke_cfg.gin_layers, 0.0, 2, 8, 1e-3, 0, cache,
                                       progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    params = init_params(make_model(dataclasses.replace(smoke_cfg, method="himpp")), smoke_cfg, sider, cache)
    assert set(encoder) < set(params["encoder"])  # all but the hypernetworks
    for name in encoder:
        assert jax.tree.map(np.shape, encoder[name]) == jax.tree.map(np.shape, params["encoder"][name])
