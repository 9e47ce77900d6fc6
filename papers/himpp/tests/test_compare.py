"""reproduce.compare: the difference, its combined SE and the verdict, on hand-worked tables."""

from __future__ import annotations

import pytest

from papers.himpp.reproduce import compare


def cell(mean: float, sem: float) -> dict[str, float]:
    return {"mean": mean, "sem": sem}


def verdicts(table: dict) -> dict[str, tuple[float, float, str]]:
    return {r["baseline"]: (r["difference"], r["se"], r["verdict"]) for r in compare(table, ["tox21 10-shot"])}


def test_gap_no_gap_and_withheld() -> None:
    table = {"himpp": {"tox21 10-shot": cell(0.70, 0.03)},
             "protonet": {"tox21 10-shot": cell(0.58, 0.03)},  # 0.12 beyond 2 * 0.042: a gap
             "maml": {"tox21 10-shot": cell(0.65, 0.04)},  # 0.05 inside 2 * hypot(0.03, 0.04) = 0.10: no gap
             "par": {"tox21 10-shot": cell(0.53, 0.02)}}  # 0.53 - 0.04 <= 0.5: not a working baseline
    got = verdicts(table)
    assert got["protonet"][:2] == pytest.approx((0.12, 0.03 * 2**0.5))  # hypot(0.03, 0.03)
    assert got["protonet"][2] == "himpp ahead"
    assert got["maml"][2] == "no gap (inside 2 combined SE)"
    assert got["par"][2].startswith("withheld: par not above chance")


def test_withheld_when_himpp_itself_is_at_chance() -> None:
    table = {"himpp": {"tox21 10-shot": cell(0.52, 0.02)}, "protonet": {"tox21 10-shot": cell(0.40, 0.01)}}
    assert verdicts(table)["protonet"][2] == "withheld: himpp and protonet not above chance (ROC-AUC - 2 SE <= 50)"
    assert compare({"protonet": {"tox21 10-shot": cell(0.6, 0.01)}}, ["tox21 10-shot"]) == []  # no HiMPP row
