"""The CPU reproduction cohort: GI-bleed risk in the synthetic Eunomia OMOP database (Synthea-derived, not real).

Every Eunomia person has osteoarthritis and takes an NSAID (celecoxib or diclofenac); 479 of 2,694 later have a
GI bleed (concept 192671). A visit is one calendar day with any condition, drug or procedure record.
Positives: the index date is the first bleed. Negatives (``negative_index``):
- ``matched`` (default): first NSAID date + a delay drawn (fixed by seed) from the positives' NSAID-to-bleed
  delays, so both classes are observed at the same point of their treatment;
- ``random_visit``: one of their own visit dates drawn at random; easy, because the positives' last visit is
  almost always the NSAID start.
Only events strictly before the index date reach the model; persons with fewer than ``min_visits`` such visits
are dropped, and so are negatives whose observation period ends before their index date (they were not observed
at the time they are labelled negative: 71 persons with ``matched``). A visit's codes are interleaved by type
(condition, drug, procedure) so the per-visit cap treats the types alike.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from papers.meddiffusion.cohort import Cohort, Vocabulary, interleave_by_type

GI_BLEED = 192671
NSAIDS = ("D1118084", "D1124300")  # celecoxib, diclofenac
NEGATIVE_INDEX = ("matched", "random_visit")
EVENTS_SQL = """
SELECT PERSON_ID AS person, CONDITION_START_DATE AS day, 'C' || CONDITION_CONCEPT_ID AS code
  FROM condition_occurrence WHERE CONDITION_CONCEPT_ID <> 0
UNION SELECT PERSON_ID, DRUG_EXPOSURE_START_DATE, 'D' || DRUG_CONCEPT_ID FROM drug_exposure WHERE DRUG_CONCEPT_ID <> 0
UNION SELECT PERSON_ID, PROCEDURE_DATE, 'P' || PROCEDURE_CONCEPT_ID
  FROM procedure_occurrence WHERE PROCEDURE_CONCEPT_ID <> 0
"""


def read_events(db_path: str | Path) -> pd.DataFrame:
    """All (person, day, code) records, one row per distinct triple, sorted."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        events = con.sql(EVENTS_SQL).df()
    events["day"] = pd.to_datetime(events["day"]).to_numpy().astype("datetime64[D]")
    return events.sort_values(["person", "day", "code"], ignore_index=True)


def observation_end(db_path: str | Path) -> pd.Series:
    """Person -> the last day of their (latest) observation period."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        ends = con.sql("SELECT PERSON_ID AS person, MAX(OBSERVATION_PERIOD_END_DATE) AS day "
                       "FROM observation_period GROUP BY 1").df()
    return pd.Series(pd.to_datetime(ends["day"]).to_numpy().astype("datetime64[D]"), index=ends["person"])


def index_dates(events: pd.DataFrame, min_visits: int, seed: int, negative_index: str = "matched",
                observed_until: pd.Series | None = None) -> pd.DataFrame:
    """Per person: index date and label (1 = first GI bleed on the index date); no row if too little history or,
    given ``observed_until``, for a negative whose observation ends before its index date."""
    if negative_index not in NEGATIVE_INDEX:
        raise ValueError(f"negative_index must be one of {NEGATIVE_INDEX}, got {negative_index!r}")
    first_bleed = events[events["code"] == f"C{GI_BLEED}"].groupby("person")["day"].min()
    first_nsaid = events[events["code"].isin(NSAIDS)].groupby("person")["day"].min()
    has_both = first_bleed.index.intersection(first_nsaid.index)
    delays = np.sort((first_bleed[has_both] - first_nsaid[has_both]).to_numpy().astype("timedelta64[D]"))
    rng = np.random.default_rng(seed)
    rows = []
    for person, days in events.groupby("person", sort=True)["day"]:
        unique_days = np.unique(days.to_numpy())
        if person in first_bleed.index:
            index, label = first_bleed[person], 1
        elif negative_index == "matched":
            if person not in first_nsaid.index or len(delays) == 0:
                continue
            index, label = first_nsaid[person] + delays[rng.integers(len(delays))], 0
        else:
            if len(unique_days) <= min_visits:
                continue
            index, label = unique_days[min_visits + rng.integers(len(unique_days) - min_visits)], 0
        if label == 0 and observed_until is not None and observed_until.get(person, index) < index:
            continue  # not observed at the index date: "negative" would be censoring, not outcome-free
        if (unique_days < index).sum() >= min_visits:
            rows.append((person, np.datetime64(index, "D"), label))
    return pd.DataFrame(rows, columns=["person", "index_date", "label"])


def build_eunomia_cohort(db_path: str | Path, min_visits: int = 2, seed: int = 0,
                         negative_index: str = "matched") -> Cohort:
    """The GI-bleed cohort: visits strictly before each person's index date, labels as described above."""
    events = read_events(db_path)
    vocab = Vocabulary(events.loc[events["code"] != f"C{GI_BLEED}", "code"])
    index = index_dates(events, min_visits, seed, negative_index, observation_end(db_path)).set_index("person")
    events = events.join(index, on="person", how="inner")
    events = events[events["day"] < events["index_date"]]  # nothing on or after the index date
    ids, visits, dates = [], [], []
    for person, group in events.groupby("person", sort=True):
        ids.append(int(person))
        per_day = group.groupby("day", sort=True)["code"]
        dates.append(np.array(list(per_day.groups), dtype="datetime64[D]"))
        visits.append([vocab.encode(interleave_by_type(list(codes))) for _, codes in per_day])
    ids_arr = np.array(ids)
    return Cohort(f"eunomia-gi_bleed-{negative_index}", vocab, ids_arr, visits, dates,
                  index.loc[ids_arr, "index_date"].to_numpy().astype("datetime64[D]"),
                  index.loc[ids_arr, "label"].to_numpy().astype(np.int64))
