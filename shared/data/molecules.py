"""Few-shot molecular property tasks in PAR's per-task layout (Tox21, SIDER, MUV, ToxCast), with official splits."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from shared.data.registry import DataMissingError, entry, kit_data_dir, tree_digest, verify

# Train/test task numbers (1-based folder names) used by PAR and PACIA/HiMPP.
TASK_SPLITS: dict[str, tuple[range, range]] = {
    "tox21": (range(1, 10), range(10, 13)),
    "sider": (range(1, 22), range(22, 28)),
    "muv": (range(1, 13), range(13, 18)),
    "toxcast": (range(1, 451), range(451, 618)),
}


@dataclasses.dataclass(frozen=True)
class FewShotTask:
    task_id: int
    smiles: list[str]
    labels: list[int]  # 1 = active (positive), 0 = inactive

    @property
    def n_pos(self) -> int:
        return sum(self.labels)


@dataclasses.dataclass(frozen=True)
class FewShotBenchmark:
    name: str
    tasks: dict[int, FewShotTask]
    train_tasks: list[int]
    test_tasks: list[int]


def load_fewshot(dataset: str, root: str | Path | None = None, verify_files: bool = True) -> FewShotBenchmark:
    """Read ``<root>/<name>/new/<task>/raw/<name>.json`` ([[negatives], [positives]]) for every task.

    ``root`` defaults to $FEWSHOT_MPP_DIR, then the kit copy in ../shared/data/fewshot_mpp. Tasks missing from a
    user's download are dropped from the split (ToxCast has gaps).
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
    return FewShotBenchmark(name, tasks, [t for t in train_ids if t in tasks], [t for t in test_ids if t in tasks])
