"""ToxCast's task split after PAR's / PACIA's drop list (99 tasks: 88 in the train range, 11 in the test range)."""

from __future__ import annotations

from shared.data import load
from shared.data.molecules import TASK_SPLITS, TOXCAST_DROP_TASKS


def test_drop_list_has_the_official_counts() -> None:
    train_range, test_range = TASK_SPLITS["toxcast"]
    assert len(TOXCAST_DROP_TASKS) == 99
    assert len(TOXCAST_DROP_TASKS & set(train_range)) == 88
    assert len(TOXCAST_DROP_TASKS & set(test_range)) == 11


def test_toxcast_split_after_the_drop_list() -> None:
    bench = load("toxcast")
    assert len(bench.tasks) == 617  # every task file is still read
    assert len(bench.test_tasks) == 156 and len(bench.train_tasks) == 450 - 88
    assert not TOXCAST_DROP_TASKS & set(bench.train_tasks + bench.test_tasks)
    # the official 0-based test tasks 450-616 minus the drop list, as 1-based folder numbers
    assert bench.test_tasks[:3] == [455, 456, 457] and bench.test_tasks[-1] == 617
