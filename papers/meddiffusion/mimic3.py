"""MIMIC-III visit sequences from the standard tables, with next-admission mortality and new-onset heart failure.

Each patient with at least ``min_visits + 1`` admissions gives one sample: the input is every admission but the
last (diagnoses, procedures, prescriptions), the label comes from the last one. ``heart_failure`` is NEW ONSET:
patients with an ICD-9 428.* diagnosis in any input admission are left out, so a positive is a first HF
diagnosis in the last admission. A visit's codes keep their recorded order within each type (diagnoses and
procedures by SEQ_NUM, drugs by start date and row) and are interleaved across types, so the per-visit cap
(``max_codes``) treats the three types alike. Works on the demo subset and on a credentialed copy
(``data_root`` or $MIMIC3_DIR).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from papers.meddiffusion.cohort import Cohort, Vocabulary, interleave_by_type

TASKS = ("mortality", "heart_failure")
REQUIRED_COLUMNS = {
    "ADMISSIONS": ("SUBJECT_ID", "HADM_ID", "ADMITTIME", "HOSPITAL_EXPIRE_FLAG"),
    "DIAGNOSES_ICD": ("HADM_ID", "SEQ_NUM", "ICD9_CODE"),
    "PROCEDURES_ICD": ("HADM_ID", "SEQ_NUM", "ICD9_CODE"),
    "PRESCRIPTIONS": ("HADM_ID", "STARTDATE", "NDC"),
}


class MissingTableError(KeyError):
    """A MIMIC-III table or column that the loader needs is absent."""


def check_tables(tables: dict[str, pd.DataFrame]) -> None:
    missing = [t for t in REQUIRED_COLUMNS if t not in tables]
    if missing:
        raise MissingTableError(f"MIMIC-III table(s) missing: {', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)}")
    for table, columns in REQUIRED_COLUMNS.items():
        absent = [c for c in columns if c not in tables[table].columns]
        if absent:
            raise MissingTableError(f"MIMIC-III table {table} lacks column(s) {', '.join(absent)}")


def admission_codes(tables: dict[str, pd.DataFrame]) -> dict[int, list[str]]:
    """HADM_ID -> its codes: 'D_<icd9>' diagnoses, 'P_<icd9>' procedures, 'M_<ndc>' drugs (NDC 0 dropped), each type
    in recorded order (first occurrence kept), then interleaved across types (``interleave_by_type``)."""
    parts = []
    for table, prefix, column, order in (("DIAGNOSES_ICD", "D_", "ICD9_CODE", "SEQ_NUM"),
                                         ("PROCEDURES_ICD", "P_", "ICD9_CODE", "SEQ_NUM"),
                                         ("PRESCRIPTIONS", "M_", "NDC", "STARTDATE")):
        frame = tables[table].dropna(subset=["HADM_ID", column]).reset_index(drop=True)
        values = frame[column]
        if column == "NDC":
            values = pd.to_numeric(values, errors="coerce")
            frame, values = frame[values > 0], values[values > 0]
            values = values.astype(np.int64).astype(str)
        key = pd.to_datetime(frame[order]) if order == "STARTDATE" else pd.to_numeric(frame[order], errors="coerce")
        part = pd.DataFrame({"HADM_ID": frame["HADM_ID"].astype(np.int64), "code": prefix + values.astype(str),
                             "key": key, "row": frame.index})
        parts.append(part.sort_values(["HADM_ID", "key", "row"], kind="stable", na_position="last"))
    codes = pd.concat(parts).drop_duplicates(["HADM_ID", "code"])
    return {int(h): interleave_by_type(list(g)) for h, g in codes.groupby("HADM_ID", sort=False)["code"]}


def heart_failure_admissions(tables: dict[str, pd.DataFrame]) -> set[int]:
    """Admissions with an ICD-9 428.* (heart failure) diagnosis."""
    diag = tables["DIAGNOSES_ICD"].dropna(subset=["ICD9_CODE"])
    return set(diag.loc[diag["ICD9_CODE"].astype(str).str.startswith("428"), "HADM_ID"].astype(np.int64))


def build_mimic3_cohort(tables: dict[str, pd.DataFrame], task: str = "mortality", min_visits: int = 1) -> Cohort:
    """One sample per patient with >= ``min_visits`` admissions before the last; label from the last admission
    (``heart_failure``: new onset only, patients with HF in an input admission are dropped)."""
    if task not in TASKS:
        raise ValueError(f"unknown MIMIC-III task {task!r}; choose one of {TASKS}")
    check_tables(tables)
    adm = tables["ADMISSIONS"].copy()
    adm["ADMITTIME"] = pd.to_datetime(adm["ADMITTIME"])
    adm = adm.sort_values(["SUBJECT_ID", "ADMITTIME", "HADM_ID"])
    codes = admission_codes(tables)
    hf = heart_failure_admissions(tables) if task == "heart_failure" else set()
    vocab = Vocabulary(c for cs in codes.values() for c in cs)
    ids, visits, dates, index_dates, labels = [], [], [], [], []
    for subject, group in adm.groupby("SUBJECT_ID", sort=True):
        if len(group) < min_visits + 1:
            continue
        history, target = group.iloc[:-1], group.iloc[-1]
        if task == "heart_failure" and hf.intersection(history["HADM_ID"].astype(np.int64)):
            continue  # prevalent HF: not at risk of a first diagnosis
        ids.append(int(subject))
        visits.append([vocab.encode(codes.get(int(h), [])) for h in history["HADM_ID"]])
        dates.append(history["ADMITTIME"].to_numpy().astype("datetime64[D]"))
        index_dates.append(np.datetime64(target["ADMITTIME"], "D"))
        if task == "mortality":
            labels.append(int(target["HOSPITAL_EXPIRE_FLAG"]))
        else:
            labels.append(int(int(target["HADM_ID"]) in hf))
    return Cohort(f"mimic3-{task}", vocab, np.array(ids), visits, dates, np.array(index_dates, dtype="datetime64[D]"),
                  np.array(labels, dtype=np.int64))
