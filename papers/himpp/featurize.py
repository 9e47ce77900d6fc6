"""SMILES -> molecular graphs with Pre-GNN's features (atom type, chirality; bond type, direction) and padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import numpy as np
from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")

NUM_ATOM_TYPES = 120  # atomic numbers 1..118 -> 0..117, plus spare/mask slots as in Pre-GNN
NUM_CHIRALITY = 3  # Pre-GNN's chirality vocabulary (unspecified, CW, CCW); CHI_OTHER (rare) reads as unspecified
NUM_BOND_TYPES = 6  # single, double, triple, aromatic, self-loop (4), mask (5)
NUM_BOND_DIRS = 3
SELF_LOOP_BOND = 4

_CHIRALITY = [
    Chem.rdchem.ChiralType.CHI_UNSPECIFIED,
    Chem.rdchem.ChiralType.CHI_TETRAHEDRAL_CW,
    Chem.rdchem.ChiralType.CHI_TETRAHEDRAL_CCW,
]
_BOND_TYPES = [Chem.rdchem.BondType.SINGLE, Chem.rdchem.BondType.DOUBLE, Chem.rdchem.BondType.TRIPLE,
               Chem.rdchem.BondType.AROMATIC]
_BOND_DIRS = [Chem.rdchem.BondDir.NONE, Chem.rdchem.BondDir.ENDUPRIGHT, Chem.rdchem.BondDir.ENDDOWNRIGHT]


class MolGraph(NamedTuple):
    """One molecule: node features (n,), directed edges (e,) including one self-loop per atom."""

    atom: np.ndarray
    chirality: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    bond_type: np.ndarray
    bond_dir: np.ndarray


class GraphBatch(NamedTuple):
    """Many molecules in one flat graph padded to fixed sizes; padded nodes belong to graph ``n_graphs``."""

    atom: np.ndarray  # (N,) int32
    chirality: np.ndarray  # (N,)
    node_graph: np.ndarray  # (N,) graph index of each node, n_graphs for padding
    src: np.ndarray  # (E,)
    dst: np.ndarray  # (E,)
    bond_type: np.ndarray  # (E,)
    bond_dir: np.ndarray  # (E,)
    graph_mask: np.ndarray  # (G,) 1.0 for every real graph (its length fixes G)


def _index(values: list, item: object) -> int:
    return values.index(item) if item in values else 0


def smiles_to_graph(smiles: str) -> MolGraph:
    """Featurise one SMILES string; raises ValueError for SMILES RDKit cannot parse or without atoms."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"RDKit cannot build a molecule from SMILES {smiles!r}")
    n = mol.GetNumAtoms()
    atom = np.array([min(a.GetAtomicNum(), 119) - 1 for a in mol.GetAtoms()], dtype=np.int32)
    chir = np.array([_index(_CHIRALITY, a.GetChiralTag()) for a in mol.GetAtoms()], dtype=np.int32)
    src, dst, btype, bdir = list(range(n)), list(range(n)), [SELF_LOOP_BOND] * n, [0] * n
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        t, d = _index(_BOND_TYPES, bond.GetBondType()), _index(_BOND_DIRS, bond.GetBondDir())
        src += [i, j]
        dst += [j, i]
        btype += [t, t]
        bdir += [d, d]
    as_int = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
    return MolGraph(atom, chir, as_int(src), as_int(dst), as_int(btype), as_int(bdir))


class GraphCache:
    """Featurises each SMILES once per process, on first use: the graphs are shared by every instance, so that
    entry points run one after another in one process (reproduce, the tests) do not featurise a benchmark again."""

    _graphs: ClassVar[dict[str, MolGraph]] = {}

    def __call__(self, smiles: str) -> MolGraph:
        graph = self._graphs.get(smiles)
        if graph is None:
            graph = self._graphs[smiles] = smiles_to_graph(smiles)
        return graph


def bucket(n: int, minimum: int = 64) -> int:
    """The next power of two strictly above ``n`` (so there is always one padding node), at least ``minimum``."""
    size = minimum
    while size <= n:
        size *= 2
    return size


def batch_graphs(graphs: Sequence[MolGraph], n_nodes: int | None = None, n_edges: int | None = None) -> GraphBatch:
    """Concatenate molecules into one padded flat graph; padding edges are self-loops on the last padded node."""
    total_nodes = sum(len(g.atom) for g in graphs)
    total_edges = sum(len(g.src) for g in graphs)
    n_nodes = bucket(total_nodes) if n_nodes is None else n_nodes
    n_edges = bucket(total_edges) if n_edges is None else n_edges
    if n_nodes <= total_nodes or n_edges < total_edges:
        raise ValueError(f"padding ({n_nodes} nodes, {n_edges} edges) too small for {total_nodes}/{total_edges}")
    offsets = np.cumsum([0] + [len(g.atom) for g in graphs[:-1]])
    pad_node = n_nodes - 1

    def cat(parts: list[np.ndarray], size: int, fill: int) -> np.ndarray:
        out = np.full(size, fill, dtype=np.int32)
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        out[: len(flat)] = flat
        return out

    return GraphBatch(
        atom=cat([g.atom for g in graphs], n_nodes, 0),
        chirality=cat([g.chirality for g in graphs], n_nodes, 0),
        node_graph=cat([np.full(len(g.atom), i, np.int32) for i, g in enumerate(graphs)], n_nodes, len(graphs)),
        src=cat([g.src + o for g, o in zip(graphs, offsets)], n_edges, pad_node),
        dst=cat([g.dst + o for g, o in zip(graphs, offsets)], n_edges, pad_node),
        bond_type=cat([g.bond_type for g in graphs], n_edges, SELF_LOOP_BOND),
        bond_dir=cat([g.bond_dir for g in graphs], n_edges, 0),
        graph_mask=np.ones(len(graphs), dtype=np.float32),
    )


def batch_size_of(groups: Sequence[Sequence[MolGraph]]) -> tuple[int, int]:
    """Common (nodes, edges) padding for several batches that will be stacked (vmapped over episodes)."""
    nodes = max(sum(len(g.atom) for g in grp) for grp in groups)
    edges = max(sum(len(g.src) for g in grp) for grp in groups)
    return bucket(nodes), bucket(edges)


def stack_batches(batches: Sequence[GraphBatch]) -> GraphBatch:
    return GraphBatch(*[np.stack(field) for field in zip(*batches)])
