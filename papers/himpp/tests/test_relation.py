"""PACIA's relation graph (self-edges masked, rel_k = shots), hypernetwork classifier and per-layer controller."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers.himpp.config import HiMPPConfig, relation_k
from papers.himpp.model import HyperClassifier, LayerController, RelationLayer
from papers.himpp.training import make_model


def _adjacency(n_shot: int, top_k: int, residual_norm: bool = False) -> np.ndarray:
    n = 2 * n_shot + 1
    x = jax.random.normal(jax.random.key(0), (3, n, 8))
    layer = RelationLayer(8, top_k, residual_norm)
    params = layer.init(jax.random.key(1), x)
    out, adj = layer.apply(params, x)
    assert out.shape == x.shape
    return np.asarray(adj)


@pytest.mark.parametrize(("n_shot", "top_k"), [(1, 1), (3, 3), (3, 100)])
def test_adjacency_has_no_self_edges_and_keeps_top_k(n_shot: int, top_k: int) -> None:
    adj = _adjacency(n_shot, top_k)
    n = 2 * n_shot + 1
    np.testing.assert_array_equal(np.diagonal(adj, axis1=1, axis2=2), 0.0)
    assert (np.count_nonzero(adj, axis=-1) == min(top_k, n - 1)).all()  # k real neighbours, never the node itself
    np.testing.assert_allclose(adj.sum(-1), 1.0, rtol=1e-5)  # L1-normalised rows
    assert (adj >= 0).all()


def test_residual_norm_variant_keeps_the_mask() -> None:
    np.testing.assert_array_equal(np.diagonal(_adjacency(2, 2, residual_norm=True), axis1=1, axis2=2), 0.0)


def test_rel_k_follows_the_shots() -> None:
    cfg = HiMPPConfig(hidden=8, hyper_hidden=8, embed_dim=8)
    assert cfg.top_k is None
    for k in (1, 5, 10):
        shot_cfg = dataclasses.replace(cfg, k_shot=k)
        assert relation_k(shot_cfg) == k and make_model(shot_cfg).top_k == k
    assert make_model(dataclasses.replace(cfg, k_shot=1, top_k=4)).top_k == 4  # an explicit top_k wins
    with pytest.raises(ValueError, match="top_k"):
        HiMPPConfig(top_k=0)


def test_prototype_classifier_on_hand_worked_values() -> None:
    xs = jnp.array([[[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]]])  # one query's support nodes
    ys = jnp.array([0, 0, 1, 1])
    xq = jnp.array([[1.0, 1.0]])
    head = HyperClassifier(2, "prototype")
    logits = head.apply(head.init(jax.random.key(0), xs, ys, xq), xs, ys, xq)
    np.testing.assert_allclose(logits, [[2.0 / np.sqrt(2), 3.0 / np.sqrt(2)]], rtol=1e-6)  # prototypes (2,0), (0,3)


def test_hyper_classifier_is_a_function_of_the_prototypes() -> None:
    """(w_c, b_c) come from the class prototypes only: supports with equal class means give equal logits."""
    key = jax.random.key(0)
    xs = jax.random.normal(key, (2, 4, 6))
    ys = jnp.array([0, 0, 1, 1])
    xq = jax.random.normal(jax.random.key(1), (2, 6))
    head = HyperClassifier(6)
    params = head.init(key, xs, ys, xq)
    shift = jnp.array([1.0, -1.0, 0.0, 0.0])[None, :, None]  # moves rows within each class, keeps the means
    np.testing.assert_allclose(head.apply(params, xs, ys, xq), head.apply(params, xs + shift, ys, xq), rtol=1e-5)
    moved = xs.at[:, 0].add(1.0)  # changes the negative prototype
    assert not np.allclose(head.apply(params, xs, ys, xq), head.apply(params, moved, ys, xq))


def test_controller_scores_from_that_layers_support_and_query() -> None:
    key = jax.random.key(0)
    xs = jax.random.normal(key, (3, 4, 6))
    ys = jnp.array([0, 0, 1, 1])
    xq = jax.random.normal(jax.random.key(1), (3, 6))
    ctrl = LayerController(8)
    params = ctrl.init(key, xs, ys, xq)
    scores = ctrl.apply(params, xs, ys, xq)
    assert scores.shape == (3,)
    swapped = xs[:, jnp.array([1, 0, 3, 2])]  # the set encoding ignores the order within a class
    np.testing.assert_allclose(ctrl.apply(params, swapped, ys, xq), scores, rtol=1e-5)
    assert not np.allclose(ctrl.apply(params, xs * 2.0, ys, xq), scores)  # depends on the support states
