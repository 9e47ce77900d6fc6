"""2-way K-shot episodes over few-shot molecular property tasks (Sec. 3: support of K per class, queries)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from papers.himpp.featurize import GraphCache
from shared.data.molecules import FewShotBenchmark, FewShotTask


@dataclass(frozen=True)
class Episode:
    task_id: int
    support_smiles: list[str]
    support_labels: np.ndarray  # (2K,) int32, K negatives then K positives
    query_smiles: list[str]
    query_labels: np.ndarray  # (Q,) int32


def check_disjoint(bench: FewShotBenchmark) -> None:
    """Meta-train and meta-test tasks must not overlap."""
    overlap = set(bench.train_tasks) & set(bench.test_tasks)
    if overlap:
        raise ValueError(f"{bench.name}: tasks {sorted(overlap)} are in both the train and the test split")


def drop_unparseable(bench: FewShotBenchmark, cache: GraphCache) -> tuple[FewShotBenchmark, int]:
    """The benchmark without the molecules RDKit cannot featurise (a few, e.g. hypervalent Al); returns the count."""
    bad: set[str] = set()
    for smiles in {s for task in bench.tasks.values() for s in task.smiles}:
        try:
            cache(smiles)
        except ValueError:
            bad.add(smiles)
    tasks = {}
    for tid, task in bench.tasks.items():
        keep = [i for i, s in enumerate(task.smiles) if s not in bad]
        tasks[tid] = replace(task, smiles=[task.smiles[i] for i in keep], labels=[task.labels[i] for i in keep])
    return replace(bench, tasks=tasks), len(bad)


def _class_indices(task: FewShotTask) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(task.labels)
    return np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)


def usable(task: FewShotTask, k_shot: int, n_query_per_class: int = 1) -> bool:
    neg, pos = _class_indices(task)
    return min(len(neg), len(pos)) >= k_shot + n_query_per_class


def fits_episode(task: FewShotTask, k_shot: int, n_query: int, balanced: bool) -> bool:
    """Whether ``sample_episode`` can draw from the task: K per class, then ``n_query`` queries."""
    neg, pos = _class_indices(task)
    if balanced:
        return len(neg) >= k_shot + n_query // 2 and len(pos) >= k_shot + n_query - n_query // 2
    return min(len(neg), len(pos)) >= k_shot and len(neg) + len(pos) - 2 * k_shot >= n_query


def sample_episode(task: FewShotTask, k_shot: int, n_query: int, rng: np.random.Generator,
                   balanced: bool = False) -> Episode:
    """Training episode: K per class in the support; ``n_query`` queries drawn at random from the rest of the task,
    i.e. at its natural class ratio (PACIA's ``sample_meta_datasets``), or split evenly between the classes."""
    neg, pos = _class_indices(task)
    if not balanced:
        if not fits_episode(task, k_shot, n_query, balanced):
            raise ValueError(f"task {task.task_id} has {len(neg)} negatives / {len(pos)} positives: too few for "
                             f"{k_shot}-shot with {n_query} queries")
        neg, pos = rng.permutation(neg), rng.permutation(pos)
        rest = np.concatenate([neg[k_shot:], pos[k_shot:]])
        query = rng.choice(rest, size=n_query, replace=False)
        return _episode(task, np.concatenate([neg[:k_shot], pos[:k_shot]]), query)
    q_neg = n_query // 2
    q_pos = n_query - q_neg
    if len(neg) < k_shot + q_neg or len(pos) < k_shot + q_pos:
        raise ValueError(f"task {task.task_id} has {len(neg)} negatives / {len(pos)} positives: too few for "
                         f"{k_shot}-shot with {n_query} queries")
    neg = rng.permutation(neg)[: k_shot + q_neg]
    pos = rng.permutation(pos)[: k_shot + q_pos]
    support = np.concatenate([neg[:k_shot], pos[:k_shot]])
    query = np.concatenate([neg[k_shot:], pos[k_shot:]])
    return _episode(task, support, query)


def sample_test_episode(task: FewShotTask, k_shot: int, rng: np.random.Generator,
                        max_queries: int | None = None, keep_positives: bool = False) -> Episode:
    """Test episode: K per class in the support; every other molecule of the task is a query (Sec. 4.1).

    ``max_queries`` caps the queries by a random subset (a CPU-budget deviation; None = all): stratified by
    default; with ``keep_positives`` every remaining positive is kept (at most half the cap) and the rest are random
    negatives, for tasks with very few positives (MUV). Both subsets leave ROC-AUC, the probability that a random
    positive outscores a random negative, unbiased.
    """
    neg, pos = _class_indices(task)
    neg, pos = rng.permutation(neg), rng.permutation(pos)
    support = np.concatenate([neg[:k_shot], pos[:k_shot]])
    rest_neg, rest_pos = neg[k_shot:], pos[k_shot:]
    if max_queries is not None and len(rest_neg) + len(rest_pos) > max_queries:
        if keep_positives:
            n_pos = min(len(rest_pos), max_queries // 2)
        else:
            n_pos = max(1, round(max_queries * len(rest_pos) / (len(rest_neg) + len(rest_pos))))
        rest_neg, rest_pos = rest_neg[: max_queries - n_pos], rest_pos[:n_pos]
    return _episode(task, support, np.concatenate([rest_neg, rest_pos]))


def _episode(task: FewShotTask, support: np.ndarray, query: np.ndarray) -> Episode:
    labels = np.asarray(task.labels, dtype=np.int32)
    return Episode(task.task_id, [task.smiles[i] for i in support], labels[support],
                   [task.smiles[i] for i in query], labels[query])
