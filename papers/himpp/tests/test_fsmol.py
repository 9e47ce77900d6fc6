"""dataset=fsmol through the entry points, on a tiny FS-Mol-layout fixture written from real Tox21 molecules."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from papers.himpp import train
from papers.himpp.common import load_benchmark
from papers.himpp.featurize import GraphCache
from shared.data import load
from shared.data.molecules import FewShotBenchmark, FewShotTask
from shared.data.registry import DataMissingError

from .conftest import SMOKE

# FS-Mol split -> (Tox21 task it is cut from, CHEMBL-style file name)
LAYOUT = {"train": [(1, "CHEMBL1000001"), (2, "CHEMBL1000002"), (3, "CHEMBL1000003")],
          "valid": [(4, "CHEMBL1000004")],
          "test": [(10, "CHEMBL1000010"), (11, "CHEMBL1000011")]}


def first_parseable(task: FewShotTask, label: int, n: int) -> list[str]:
    """The first ``n`` molecules of the class that RDKit can featurise."""
    out = []
    for smiles, y in zip(task.smiles, task.labels, strict=True):
        if y == label and len(out) < n:
            try:
                GraphCache()(smiles)
            except ValueError:
                continue
            out.append(smiles)
    return out


def write_fsmol(root: Path, tox21: FewShotBenchmark, n_neg: int = 24, n_pos: int = 8) -> dict[str, list[str]]:
    """FS-Mol's layout: <split>/<CHEMBL id>.jsonl.gz, one JSON record per molecule with 'SMILES' and 'Property'
    ("1.0" active, "0.0" inactive) among FS-Mol's other fields; returns the SMILES written per CHEMBL id."""
    written = {}
    for split, tasks in LAYOUT.items():
        (root / split).mkdir(parents=True)
        for tox_id, chembl in tasks:
            task = tox21.tasks[tox_id]
            neg, pos = first_parseable(task, 0, n_neg), first_parseable(task, 1, n_pos)
            with gzip.open(root / split / f"{chembl}.jsonl.gz", "wt") as fh:
                for smiles, label in [(s, 0) for s in neg] + [(s, 1) for s in pos]:
                    fh.write(json.dumps({"SMILES": smiles, "Property": f"{float(label)}", "Assay_ID": chembl,
                                         "RegressionProperty": "5.0", "LogRegressionProperty": "0.7",
                                         "Relation": "="}) + "\n")
            written[chembl] = neg + pos
    return written


@pytest.fixture(scope="module")
def fsmol_dir(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("fsmol")
    return root, write_fsmol(root, load("tox21"))


def test_fsmol_splits_and_names(fsmol_dir, monkeypatch) -> None:
    root, written = fsmol_dir
    monkeypatch.setenv("FSMOL_DIR", str(root))
    bench = load_benchmark("fsmol", GraphCache())
    names = {split: [bench.tasks[t].name for t in ids]
             for split, ids in (("train", bench.train_tasks), ("test", bench.test_tasks))}
    assert names == {"train": [c for _, c in LAYOUT["train"]], "test": [c for _, c in LAYOUT["test"]]}
    assert not set(bench.train_tasks) & set(bench.test_tasks)
    for task in bench.tasks.values():  # every molecule and label survives the loader and the RDKit clean-up
        assert task.smiles == written[task.name] and task.labels == [0] * 24 + [1] * 8
    small = load_benchmark("fsmol", GraphCache(), fsmol_max_tasks_per_split=1)
    assert [small.tasks[t].name for t in small.train_tasks + small.test_tasks] == ["CHEMBL1000001", "CHEMBL1000010"]


def test_fsmol_train_entry_point(fsmol_dir, monkeypatch, tmp_path) -> None:
    root, _ = fsmol_dir
    monkeypatch.setenv("FSMOL_DIR", str(root))
    metrics = train.main(["--config", str(SMOKE), "--out", str(tmp_path / "run"), "dataset=fsmol", "method=protonet"])
    assert metrics["dataset"] == "fsmol" and set(metrics["per_task"]) == {"CHEMBL1000010", "CHEMBL1000011"}
    assert 0.0 <= metrics["roc_auc"] <= 1.0 and math.isfinite(metrics["train_loss_last"])


def test_fsmol_missing_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FSMOL_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path / "data_home"))
    with pytest.raises(DataMissingError, match="FSMOL_DIR"):
        load_benchmark("fsmol", GraphCache())
