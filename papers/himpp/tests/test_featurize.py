"""Featurisation of known molecules and padded batching."""

from __future__ import annotations

import numpy as np
import pytest

from papers.himpp.featurize import SELF_LOOP_BOND, batch_graphs, bucket, smiles_to_graph
from papers.himpp.model import mean_pool


@pytest.mark.parametrize(("smiles", "atoms", "bonds"), [
    ("CCO", 3, 2), ("c1ccccc1", 6, 6), ("CC(=O)Oc1ccccc1C(=O)O", 13, 13), ("[Na+].[Cl-]", 2, 0)])
def test_atom_and_edge_counts(smiles: str, atoms: int, bonds: int) -> None:
    g = smiles_to_graph(smiles)
    assert len(g.atom) == atoms
    assert len(g.src) == 2 * bonds + atoms  # both directions plus one self-loop per atom
    assert all(a.dtype == np.int32 for a in g)


def test_features_of_ethanol_and_benzene() -> None:
    g = smiles_to_graph("CCO")
    np.testing.assert_array_equal(g.atom, [5, 5, 7])  # atomic number - 1
    assert sorted(zip(g.src.tolist(), g.dst.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    b = smiles_to_graph("c1ccccc1")
    assert set(b.bond_type[b.src != b.dst].tolist()) == {3}  # aromatic
    assert set(b.bond_type[b.src == b.dst].tolist()) == {SELF_LOOP_BOND}


def test_chirality_and_bond_direction() -> None:
    g = smiles_to_graph("C[C@H](N)O")
    assert g.chirality[1] in (1, 2) and g.chirality[0] == 0
    d = smiles_to_graph("F/C=C/F")
    assert set(d.bond_dir.tolist()) > {0}


def test_bad_smiles_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="RDKit cannot"):
        smiles_to_graph("C1CC(")


def test_batch_padding_and_mean_pool_match_numpy() -> None:
    graphs = [smiles_to_graph(s) for s in ("CCO", "c1ccccc1", "N")]
    g = batch_graphs(graphs)
    assert g.atom.shape == (bucket(10),) and g.src.shape == (bucket(sum(len(x.src) for x in graphs)),)
    assert (g.node_graph[:10] == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2]).all() and (g.node_graph[10:] == 3).all()
    h = np.random.default_rng(0).normal(size=(len(g.atom), 4)).astype(np.float32)
    pooled = np.asarray(mean_pool(h, g))
    np.testing.assert_allclose(pooled, [h[0:3].mean(0), h[3:9].mean(0), h[9:10].mean(0)], rtol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        batch_graphs(graphs, n_nodes=10)
