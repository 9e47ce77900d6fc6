"""The adaptation mechanisms on hand-worked values, invariances and determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.metrics import roc_auc_score

from papers.himpp.model import (
    SetEncoder,
    class_means,
    controller_loss,
    l2_normalise,
    modulate,
    select_layer_logits,
)
from shared.metrics import roc_auc


def test_modulation_on_hand_worked_values() -> None:
    h = jnp.array([[1.0, 2.0], [-1.0, 0.0]])
    out = modulate(h, jnp.array([0.5, -1.0]), jnp.array([0.1, 0.2]))  # h * (1 + w) + b
    np.testing.assert_allclose(out, [[1.6, 0.2], [-1.4, 0.2]], rtol=1e-6)


def test_l2_normalise() -> None:
    np.testing.assert_allclose(l2_normalise(jnp.array([3.0, 4.0])), [0.6, 0.8], rtol=1e-6)


def test_controller_loss_on_hand_worked_values() -> None:
    # one query, two layers: scores (0, ln 3) -> weights (1/4, 3/4); CE of layer 1 = ln 2, of layer 2 = -log p
    logits = jnp.array([[[0.0, 0.0], [0.0, 2.0]]])
    scores = jnp.array([[0.0, np.log(3.0)]])
    ce2 = -np.log(np.exp(2.0) / (1 + np.exp(2.0)))
    np.testing.assert_allclose(controller_loss(logits, scores, jnp.array([1])), 0.25 * np.log(2) + 0.75 * ce2,
                               rtol=1e-5)


def test_controller_loss_matches_scipy_on_random_values() -> None:
    rng = np.random.default_rng(1)
    logits, scores, y = rng.normal(size=(7, 4, 2)), rng.normal(size=(7, 4)), rng.integers(0, 2, 7)
    ce = -log_softmax(logits, axis=-1)[np.arange(7), :, y]
    expected = np.mean(np.sum(softmax(scores, axis=-1) * ce, axis=-1))
    np.testing.assert_allclose(controller_loss(jnp.array(logits), jnp.array(scores), jnp.array(y)), expected,
                               rtol=1e-5)


def test_test_time_layer_choice_picks_the_argmax_layer() -> None:
    logits = jnp.arange(12.0).reshape(2, 3, 2)
    chosen = select_layer_logits(logits, jnp.array([[0.1, 0.9, 0.0], [5.0, 1.0, 2.0]]))
    np.testing.assert_array_equal(chosen, [[2.0, 3.0], [6.0, 7.0]])


def test_class_means_match_numpy() -> None:
    x = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(class_means(jnp.array(x), jnp.array(y)), [x[y == 0].mean(0), x[y == 1].mean(0)],
                               rtol=1e-5)


def test_set_encoder_is_invariant_to_order_within_a_class() -> None:
    x = jax.random.normal(jax.random.key(0), (8, 5))
    y = jnp.array([0, 0, 0, 0, 1, 1, 1, 1])
    enc = SetEncoder(hidden=16, out=6)
    params = enc.init(jax.random.key(1), x, y)
    perm = jnp.array([2, 0, 3, 1, 7, 5, 4, 6])
    np.testing.assert_allclose(enc.apply(params, x, y), enc.apply(params, x[perm], y[perm]), rtol=1e-5, atol=1e-6)
    swapped = enc.apply(params, x, 1 - y)  # the labels matter
    assert not np.allclose(enc.apply(params, x, y), swapped)


def test_same_key_same_parameters() -> None:
    x, y = jnp.ones((4, 3)), jnp.array([0, 0, 1, 1])
    enc = SetEncoder(hidden=8, out=4)
    a, b, c = (enc.init(jax.random.key(k), x, y) for k in (3, 3, 4))
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


def test_roc_auc_equals_scikit_learn_on_jax_arrays() -> None:
    rng = np.random.default_rng(3)
    y, s = rng.integers(0, 2, 200), rng.normal(size=200)
    assert roc_auc(jnp.array(y), jnp.array(s)) == roc_auc_score(y, s)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75  # hand-worked
