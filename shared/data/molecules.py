"""Few-shot molecular property tasks: PAR's per-task layout (Tox21, SIDER, MUV, ToxCast) and FS-Mol, with official splits."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from pathlib import Path

from shared.data.registry import (
    DataMissingError,
    candidate_dirs,
    data_home,
    entry,
    find_source,
    kit_data_dir,
    tree_digest,
    verify,
)

# Train/test task numbers (1-based folder names) used by PAR and PACIA/HiMPP.
TASK_SPLITS: dict[str, tuple[range, range]] = {
    "tox21": (range(1, 10), range(10, 13)),
    "sider": (range(1, 22), range(22, 28)),
    "muv": (range(1, 13), range(13, 18)),
    "toxcast": (range(1, 451), range(451, 618)),
}

# ToxCast tasks PAR and PACIA leave out (`toxcast_drop_tasks` in their chem_lib/datasets/samples.py, 0-based there,
# 1-based folder numbers here): 99 tasks, 88 of the train range and 11 of the test range, leaving 362 / 156.
TOXCAST_DROP_TASKS: frozenset[int] = frozenset(i + 1 for i in (
    343, 348, 349, 352, 354, 355, 356, 357, 358, 360, 361, 362, 364, 367, 368, 369, 370, 371, 372, 373, 374, 376, 377,
    378, 379, 380, 381, 382, 383, 384, 385, 387, 388, 389, 390, 391, 392, 393, 394, 395, 396, 397, 398, 399, 400, 401,
    402, 403, 404, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 419, 420, 421, 422, 423, 424, 426, 428,
    429, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439, 440, 442, 443, 444, 445, 446, 447, 449, 450, 451, 452, 453,
    474, 475, 477, 480, 481, 482, 483))
DROP_TASKS: dict[str, frozenset[int]] = {"toxcast": TOXCAST_DROP_TASKS}


@dataclasses.dataclass(frozen=True)
class FewShotTask:
    task_id: int
    smiles: list[str]
    labels: list[int]  # 1 = active (positive), 0 = inactive
    name: str = ""  # the source's own task name where it has one (FS-Mol's CHEMBL assay id)

    @property
    def n_pos(self) -> int:
        return sum(self.labels)


@dataclasses.dataclass(frozen=True)
class FewShotBenchmark:
    name: str
    tasks: dict[int, FewShotTask]
    train_tasks: list[int]
    test_tasks: list[int]
    valid_tasks: list[int] = dataclasses.field(default_factory=list)


def load_fewshot(dataset: str, root: str | Path | None = None, verify_files: bool = True) -> FewShotBenchmark:
    """Read ``<root>/<name>/new/<task>/raw/<name>.json`` ([[negatives], [positives]]) for every task.

    ``root`` defaults to $FEWSHOT_MPP_DIR, then the kit copy in ../shared/data/fewshot_mpp. Tasks missing from a
    user's download are dropped from the split (ToxCast has gaps), and so are the official drop list's
    (``DROP_TASKS``: 99 ToxCast tasks).
    """
    name = dataset
    if name not in TASK_SPLITS:
        raise ValueError(f"unknown few-shot data set {name!r}; choose one of {sorted(TASK_SPLITS)}")
    base = Path(root) if root else Path(os.environ.get("FEWSHOT_MPP_DIR", kit_data_dir() / "fewshot_mpp"))
    folder = base / name / "new"
    files = sorted(folder.glob(f"*/raw/{name}.json"))
    if not files:
        raise DataMissingError(f"no task files {folder}/<task>/raw/{name}.json. How to get it: {entry(name).how_to_get}")
    if verify_files and root is None and "FEWSHOT_MPP_DIR" not in os.environ:
        verify(name, "tasks", tree_digest(folder, files), folder)
    tasks = {}
    for f in files:
        task_id = int(f.parent.parent.name)
        negatives, positives = json.loads(f.read_text())
        tasks[task_id] = FewShotTask(task_id, list(negatives) + list(positives), [0] * len(negatives) + [1] * len(positives))
    train_ids, test_ids = TASK_SPLITS[name]
    dropped = DROP_TASKS.get(name, frozenset())
    keep = lambda ids: [t for t in ids if t in tasks and t not in dropped]  # noqa: E731
    return FewShotBenchmark(name, tasks, keep(train_ids), keep(test_ids))


FSMOL_SPLITS = ("train", "valid", "test")


def read_fsmol_task(path: Path, task_id: int) -> FewShotTask:
    """One FS-Mol task file: JSON lines with 'SMILES' and 'Property' ("1.0" active); active = Property > 0.5."""
    smiles, labels = [], []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                smiles.append(record["SMILES"])
                labels.append(int(float(record["Property"]) > 0.5))
    return FewShotTask(task_id, smiles, labels, name=path.name.removesuffix(".jsonl.gz"))


def load_fsmol(root: str | Path | None = None, max_tasks_per_split: int | None = None) -> FewShotBenchmark:
    """FS-Mol's ``train/``, ``valid/`` and ``test/`` folders of ``<CHEMBL id>.jsonl.gz`` task files.

    ``root`` defaults to $FSMOL_DIR, then <data home>/fsmol. Tasks are numbered from 1 in split order (train, valid,
    test; files sorted by name), each keeping its CHEMBL id as ``name``; ``max_tasks_per_split`` reads only the
    first tasks of each split (the full train split is about 5,000 files).
    """
    src = find_source("fsmol", candidate_dirs(root, "FSMOL_DIR", data_home() / "fsmol"), FSMOL_SPLITS)
    tasks: dict[int, FewShotTask] = {}
    ids: dict[str, list[int]] = {}
    for split in FSMOL_SPLITS:
        files = sorted((src / split).glob("*.jsonl.gz"))[:max_tasks_per_split]
        if not files:
            raise DataMissingError(f"{src / split} holds no *.jsonl.gz task files. How to get it: {entry('fsmol').how_to_get}")
        ids[split] = []
        for f in files:
            task = read_fsmol_task(f, len(tasks) + 1)
            tasks[task.task_id] = task
            ids[split].append(task.task_id)
    return FewShotBenchmark("fsmol", tasks, ids["train"], ids["test"], valid_tasks=ids["valid"])
