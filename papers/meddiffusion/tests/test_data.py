"""The MIMIC-III loader against direct pandas counts, the Eunomia cohort's index dates, splits and padding."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from papers.meddiffusion.cohort import (
    UnknownCodeError,
    Vocabulary,
    interleave_by_type,
    pad_cohort,
    patient_splits,
    training_subset,
)
from papers.meddiffusion.eunomia import GI_BLEED, build_eunomia_cohort
from papers.meddiffusion.mimic3 import MissingTableError, admission_codes, build_mimic3_cohort
from papers.meddiffusion.tests.toy import toy_cohort
from shared.data import load


@pytest.fixture(scope="module")
def mimic() -> dict[str, pd.DataFrame]:
    return load("mimic3")


@pytest.fixture(scope="module")
def eunomia_path() -> str:
    return str(load("eunomia"))


@pytest.fixture(scope="module")
def eunomia(eunomia_path: str):
    return build_eunomia_cohort(eunomia_path, min_visits=2, seed=0)


@pytest.mark.parametrize("task", ["mortality", "heart_failure"])
def test_mimic3_counts_match_pandas(mimic: dict[str, pd.DataFrame], task: str) -> None:
    cohort = build_mimic3_cohort(mimic, task)
    adm = mimic["ADMISSIONS"].assign(ADMITTIME=lambda d: pd.to_datetime(d["ADMITTIME"]))
    adm = adm.sort_values(["SUBJECT_ID", "ADMITTIME"])
    sizes = adm.groupby("SUBJECT_ID").size()
    multi = sizes[sizes >= 2]
    adm = adm[adm["SUBJECT_ID"].isin(multi.index)]
    last = adm.groupby("SUBJECT_ID").tail(1)
    diag = mimic["DIAGNOSES_ICD"]
    hf = set(diag.loc[diag["ICD9_CODE"].astype(str).str.startswith("428"), "HADM_ID"])
    if task == "heart_failure":  # new onset: no HF diagnosis in any earlier admission
        prior_hf = set(adm.loc[adm["HADM_ID"].isin(hf) & ~adm["HADM_ID"].isin(last["HADM_ID"]), "SUBJECT_ID"])
        assert prior_hf  # the demo has prevalent cases, so the exclusion is exercised
        multi = multi[~multi.index.isin(prior_hf)]
        last = last[~last["SUBJECT_ID"].isin(prior_hf)]
    assert len(cohort) == len(multi) == (14 if task == "mortality" else 14 - len(prior_hf))
    assert sorted(cohort.patient_ids) == sorted(multi.index)
    assert sum(len(v) for v in cohort.visits) == int((multi - 1).sum())
    expected = int(last["HOSPITAL_EXPIRE_FLAG"].sum()) if task == "mortality" else int(last["HADM_ID"].isin(hf).sum())
    assert int(cohort.labels.sum()) == expected
    assert all((dates < idx).all() for dates, idx in zip(cohort.visit_dates, cohort.index_dates))


def test_interleave_by_type_round_robin() -> None:
    assert interleave_by_type(["D_1", "D_2", "D_3", "M_9", "P_5", "P_6"]) == ["D_1", "M_9", "P_5", "D_2", "P_6", "D_3"]
    assert interleave_by_type(["C1", "C2", "D7", "P3"]) == ["C1", "D7", "P3", "C2"]  # Eunomia: type = first letter


@pytest.mark.parametrize("cap", [20, 40])
def test_mimic3_code_cap_keeps_each_type_its_fair_share(mimic: dict[str, pd.DataFrame], cap: int) -> None:
    """Cut at ``cap`` codes, each type keeps min(its count, L), L the water-filling level (computed here
    independently); within a type the kept codes are the first by SEQ_NUM (diagnoses)."""
    codes = admission_codes(mimic)
    kept_d = total_d = 0
    for hadm, visit in codes.items():
        counts = {t: sum(c.startswith(t) for c in visit) for t in ("D_", "P_", "M_")}
        counts = {t: n for t, n in counts.items() if n}
        level = next(lv for lv in range(cap + 1) if sum(min(n, lv) for n in counts.values()) >= min(cap, len(visit)))
        kept = visit[:cap]
        for t, n in counts.items():
            got = sum(c.startswith(t) for c in kept)
            assert min(n, level - 1) <= got <= min(n, level), (hadm, t)
        kept_d += sum(c.startswith("D_") for c in kept)
        total_d += counts.get("D_", 0)
    diag = mimic["DIAGNOSES_ICD"].dropna(subset=["ICD9_CODE"])
    first = diag[diag["HADM_ID"] == diag["HADM_ID"].iloc[0]].sort_values("SEQ_NUM")
    expected = list(dict.fromkeys("D_" + first["ICD9_CODE"].astype(str)))
    assert [c for c in codes[int(first["HADM_ID"].iloc[0])] if c.startswith("D_")] == expected
    assert kept_d < total_d  # the old alphabetical cut kept every diagnosis and starved drugs/procedures


def test_mimic3_codes_of_one_admission(mimic: dict[str, pd.DataFrame]) -> None:
    cohort = build_mimic3_cohort(mimic, "mortality")
    i = 0
    adm = mimic["ADMISSIONS"].assign(t=lambda d: pd.to_datetime(d["ADMITTIME"]))
    first = adm[adm["SUBJECT_ID"] == cohort.patient_ids[i]].sort_values("t")["HADM_ID"].iloc[0]
    diag = mimic["DIAGNOSES_ICD"]
    expected = {"D_" + str(c) for c in diag.loc[diag["HADM_ID"] == first, "ICD9_CODE"].dropna()}
    got = {cohort.vocab.codes[k - 1] for k in cohort.visits[i][0]}
    assert {c for c in got if c.startswith("D_")} == expected


def test_mimic3_missing_table_and_column(mimic: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(MissingTableError, match="PRESCRIPTIONS"):
        build_mimic3_cohort({k: v for k, v in mimic.items() if k != "PRESCRIPTIONS"})
    broken = dict(mimic, ADMISSIONS=mimic["ADMISSIONS"].drop(columns=["HOSPITAL_EXPIRE_FLAG"]))
    with pytest.raises(MissingTableError, match="HOSPITAL_EXPIRE_FLAG"):
        build_mimic3_cohort(broken)
    with pytest.raises(ValueError, match="unknown MIMIC-III task"):
        build_mimic3_cohort(mimic, "sepsis")


def test_unknown_codes_are_named() -> None:
    vocab = Vocabulary(["a", "b"])
    assert vocab.encode(["b", "a"]) == [2, 1]
    with pytest.raises(UnknownCodeError, match="zz"):
        vocab.encode(["a", "zz"])


def test_eunomia_nothing_on_or_after_the_index_date(eunomia, eunomia_path: str) -> None:
    assert len(eunomia) > 2000 and 0.1 < eunomia.labels.mean() < 0.3
    assert f"C{GI_BLEED}" not in eunomia.vocab.index  # the outcome itself is never an input
    for dates, idx in zip(eunomia.visit_dates, eunomia.index_dates):
        assert len(dates) >= 2 and dates.max() < idx and (np.diff(dates.astype(np.int64)) > 0).all()
    # independent check against the database for a few persons: the inputs are exactly the earlier records
    with duckdb.connect(eunomia_path, read_only=True) as con:
        for i in [0, int(np.argmax(eunomia.labels)), len(eunomia) - 1]:
            person, idx = int(eunomia.patient_ids[i]), str(eunomia.index_dates[i])
            rows = con.sql(f"""
                SELECT DISTINCT 'C' || CONDITION_CONCEPT_ID FROM condition_occurrence
                  WHERE PERSON_ID = {person} AND CONDITION_START_DATE < DATE '{idx}' AND CONDITION_CONCEPT_ID <> 0
                UNION SELECT DISTINCT 'D' || DRUG_CONCEPT_ID FROM drug_exposure
                  WHERE PERSON_ID = {person} AND DRUG_EXPOSURE_START_DATE < DATE '{idx}' AND DRUG_CONCEPT_ID <> 0
                UNION SELECT DISTINCT 'P' || PROCEDURE_CONCEPT_ID FROM procedure_occurrence
                  WHERE PERSON_ID = {person} AND PROCEDURE_DATE < DATE '{idx}' AND PROCEDURE_CONCEPT_ID <> 0
            """).fetchall()
            got = {eunomia.vocab.codes[k - 1] for visit in eunomia.visits[i] for k in visit}
            assert got == {r[0] for r in rows}


def test_eunomia_negatives_are_observed_at_their_index_date(eunomia, eunomia_path: str) -> None:
    with duckdb.connect(eunomia_path, read_only=True) as con:
        ends = dict(con.sql("SELECT PERSON_ID, MAX(OBSERVATION_PERIOD_END_DATE) FROM observation_period "
                            "GROUP BY 1").fetchall())
    neg = eunomia.labels == 0
    assert all(np.datetime64(ends[int(p)], "D") >= idx for p, idx in zip(eunomia.patient_ids[neg],
                                                                         eunomia.index_dates[neg]))
    assert len(eunomia) == 2694 - 71 and int(eunomia.labels.sum()) == 479  # 71 censored negatives dropped


def test_eunomia_positives_are_indexed_at_the_first_bleed(eunomia, eunomia_path: str) -> None:
    with duckdb.connect(eunomia_path, read_only=True) as con:
        first = dict(con.sql(f"SELECT PERSON_ID, MIN(CONDITION_START_DATE) FROM condition_occurrence "
                             f"WHERE CONDITION_CONCEPT_ID = {GI_BLEED} GROUP BY 1").fetchall())
    pos = eunomia.labels == 1
    assert pos.sum() <= len(first)
    for person, idx in zip(eunomia.patient_ids[pos], eunomia.index_dates[pos]):
        assert np.datetime64(first[int(person)], "D") == idx
    assert not set(eunomia.patient_ids[~pos].tolist()) & set(first)


def test_eunomia_random_visit_design_and_bad_option(eunomia_path: str) -> None:
    cohort = build_eunomia_cohort(eunomia_path, min_visits=3, seed=1, negative_index="random_visit")
    assert all(len(d) >= 3 and d.max() < idx for d, idx in zip(cohort.visit_dates, cohort.index_dates))
    with pytest.raises(ValueError, match="negative_index"):
        build_eunomia_cohort(eunomia_path, negative_index="later")


def test_splits_are_patient_level_stratified_and_fixed_by_seed() -> None:
    labels = toy_cohort(200).labels
    a, b = patient_splits(labels, 0.15, 0.1, seed=3), patient_splits(labels, 0.15, 0.1, seed=3)
    assert all(np.array_equal(getattr(a, s), getattr(b, s)) for s in ("train", "val", "test"))
    union = np.concatenate([a.train, a.val, a.test])
    assert len(union) == len(set(union.tolist())) == 200
    assert len(a.test) == 20 and len(a.val) == 30
    assert abs(labels[a.test].mean() - labels.mean()) < 0.05
    c = patient_splits(labels, 0.15, 0.1, seed=4)
    assert not np.array_equal(a.test, c.test)


def test_training_subsets_are_nested_and_stratified() -> None:
    labels = toy_cohort(400).labels
    train = patient_splits(labels, 0.15, 0.1, 0).train
    small, large = training_subset(train, labels, 0.1, 0), training_subset(train, labels, 0.5, 0)
    assert set(small.tolist()) <= set(large.tolist()) <= set(train.tolist())
    assert labels[small].sum() >= 1 and abs(len(small) - 0.1 * len(train)) <= 2
    with pytest.raises(ValueError):
        training_subset(train, labels, 0.0, 0)


def test_padding_shapes_dtypes_and_time_feature() -> None:
    cohort = toy_cohort(30)
    batch = pad_cohort(cohort, max_visits=4, max_codes=2)
    assert batch.codes.shape == (30, 4, 2) and str(batch.codes.dtype) == "torch.int64"
    assert batch.days.dtype.is_floating_point and batch.lengths.max() <= 4 and batch.lengths.min() >= 1
    for i in range(30):
        n = int(batch.lengths[i])
        kept = cohort.visits[i][-4:]
        assert n == len(kept)
        assert batch.codes[i, :n, 0].tolist() == [v[0] for v in kept]
        assert (batch.codes[i, n:] == 0).all()
        assert batch.days[i, n - 1] == 0 and (batch.days[i, :n] >= 0).all()
