"""Task splits and episode sampling."""

from __future__ import annotations

import numpy as np
import pytest

from papers.himpp.episodes import check_disjoint, drop_unparseable, sample_episode, sample_test_episode
from papers.himpp.featurize import GraphCache
from shared.data import load
from shared.data.molecules import FewShotBenchmark, FewShotTask


@pytest.mark.parametrize("name", ["tox21", "sider", "muv"])
def test_train_and_test_tasks_are_disjoint(name: str) -> None:
    bench = load(name)
    check_disjoint(bench)
    assert set(bench.train_tasks).isdisjoint(bench.test_tasks) and bench.test_tasks


def test_overlapping_split_is_rejected() -> None:
    task = FewShotTask(1, ["C", "CC"], [0, 1])
    with pytest.raises(ValueError, match="both the train and the test"):
        check_disjoint(FewShotBenchmark("x", {1: task}, [1], [1]))


def test_random_training_queries_follow_the_natural_ratio() -> None:
    # 100 negatives, 20 positives: after a 2-shot support the rest holds 18 / 116 positives
    task = FewShotTask(1, [f"C{i}" for i in range(120)], [0] * 100 + [1] * 20)
    rng = np.random.default_rng(0)
    fractions = []
    for _ in range(400):
        ep = sample_episode(task, 2, 16, rng)
        assert ep.support_labels.tolist() == [0, 0, 1, 1]
        assert set(ep.support_smiles).isdisjoint(ep.query_smiles) and len(set(ep.query_smiles)) == 16
        fractions.append(ep.query_labels.mean())
    # hypergeometric mean 18/116 = 0.155; the standard error of the mean of 400 draws is about 0.004
    assert abs(np.mean(fractions) - 18 / 116) < 0.015
    assert min(fractions) < 0.5 - 1e-9 and np.std(fractions) > 0.05  # not balanced 8 / 8


def test_random_training_queries_need_enough_molecules() -> None:
    task = FewShotTask(1, [f"C{i}" for i in range(12)], [0] * 8 + [1] * 4)
    with pytest.raises(ValueError, match="too few"):
        sample_episode(task, 2, 9, np.random.default_rng(0))  # 12 - 4 = 8 molecules left for 9 queries


def test_training_episode_is_balanced_and_disjoint(sider) -> None:
    task = sider.tasks[sider.train_tasks[0]]
    ep = sample_episode(task, 5, 16, np.random.default_rng(0), balanced=True)
    assert ep.support_labels.tolist() == [0] * 5 + [1] * 5
    assert ep.query_labels.tolist() == [0] * 8 + [1] * 8
    assert set(ep.support_smiles).isdisjoint(ep.query_smiles)
    again = sample_episode(task, 5, 16, np.random.default_rng(0), balanced=True)
    assert again.support_smiles == ep.support_smiles  # same seed, same episode


def test_test_episode_queries_every_other_molecule(sider) -> None:
    task = sider.tasks[sider.test_tasks[0]]
    ep = sample_test_episode(task, 10, np.random.default_rng(1))
    assert len(ep.query_smiles) == len(task.smiles) - 20
    assert sorted(ep.support_smiles + ep.query_smiles) == sorted(task.smiles)
    capped = sample_test_episode(task, 10, np.random.default_rng(1), max_queries=50)
    assert len(capped.query_smiles) == 50 and set(capped.query_labels.tolist()) == {0, 1}


def test_capped_queries_stratified_or_keeping_every_positive() -> None:
    # 200 negatives, 14 positives: after a 2-shot support, 198 negatives and 12 positives remain
    task = FewShotTask(1, [f"C{i}" for i in range(214)], [0] * 200 + [1] * 14)
    strat = sample_test_episode(task, 2, np.random.default_rng(0), max_queries=70)
    assert strat.query_labels.tolist().count(1) == 4  # round(70 * 12 / 210)
    kept = sample_test_episode(task, 2, np.random.default_rng(0), max_queries=70, keep_positives=True)
    assert kept.query_labels.tolist().count(1) == 12 and len(kept.query_labels) == 70  # all 12, 58 negatives
    half = sample_test_episode(task, 2, np.random.default_rng(0), max_queries=16, keep_positives=True)
    assert half.query_labels.tolist().count(1) == 8 and len(half.query_labels) == 16  # at most half the cap
    assert set(kept.query_smiles).isdisjoint(kept.support_smiles)


def test_unparseable_molecules_keep_task_names_and_splits() -> None:
    task = FewShotTask(3, ["CCO", "C1CC(", "N"], [0, 1, 1], name="CHEMBL123")
    bench = FewShotBenchmark("fsmol", {3: task}, [], [3], valid_tasks=[3])
    clean, _ = drop_unparseable(bench, GraphCache())
    assert clean.tasks[3].name == "CHEMBL123" and clean.valid_tasks == [3] and clean.tasks[3].labels == [0, 1]


def test_too_small_task_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        sample_episode(FewShotTask(1, ["C", "CC", "CCC"], [0, 1, 1]), 2, 4, np.random.default_rng(0))


def test_unparseable_molecules_are_dropped() -> None:
    bench = FewShotBenchmark("x", {1: FewShotTask(1, ["CCO", "C1CC(", "N"], [0, 1, 1])}, [1], [])
    clean, n_bad = drop_unparseable(bench, GraphCache())
    assert n_bad == 1 and clean.tasks[1].smiles == ["CCO", "N"] and clean.tasks[1].labels == [0, 1]
