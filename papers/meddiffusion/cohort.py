"""Per-patient visit sequences shared by every loader: a code vocabulary, padding to tensors, patient-level splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split


class UnknownCodeError(KeyError):
    """A medical code that the vocabulary has never seen."""


class Vocabulary:
    """Medical code strings <-> ids; id 0 is padding, so real codes start at 1."""

    def __init__(self, codes: Iterable[str]) -> None:
        self.codes = sorted(set(codes))
        self.index = {code: i + 1 for i, code in enumerate(self.codes)}

    def __len__(self) -> int:
        return len(self.codes)

    def encode(self, codes: Sequence[str]) -> list[int]:
        unknown = sorted({c for c in codes if c not in self.index})
        if unknown:
            raise UnknownCodeError(
                f"{len(unknown)} code(s) not in the vocabulary of {len(self)} codes: {', '.join(unknown[:5])}"
                + (" ..." if len(unknown) > 5 else "")
            )
        return [self.index[c] for c in codes]


def interleave_by_type(codes: Sequence[str]) -> list[str]:
    """Round-robin over code types (the prefix before the first '_' or the first letter), each type in its given
    order: a visit cut to its first k codes then keeps every type's share up to k / (number of types), with spare
    slots going to the types that have more codes, instead of keeping whichever type sorts first."""
    groups: dict[str, list[str]] = {}
    for code in codes:
        groups.setdefault(code.split("_", 1)[0] if "_" in code else code[:1], []).append(code)
    columns = list(groups.values())
    return [col[i] for i in range(max((len(c) for c in columns), default=0)) for col in columns if i < len(col)]


@dataclasses.dataclass
class Cohort:
    """One binary risk-prediction task: each patient's visits (code ids), visit dates, index date and label."""

    name: str
    vocab: Vocabulary
    patient_ids: np.ndarray  # (N,)
    visits: list[list[list[int]]]  # patient -> visit -> code ids (>= 1)
    visit_dates: list[np.ndarray]  # patient -> (V,) datetime64[D], strictly increasing
    index_dates: np.ndarray  # (N,) datetime64[D]: the prediction time; every input visit lies before it
    labels: np.ndarray  # (N,) int64 in {0, 1}

    def __post_init__(self) -> None:
        n = len(self.patient_ids)
        if not (len(self.visits) == len(self.visit_dates) == len(self.index_dates) == len(self.labels) == n):
            raise ValueError("every per-patient field of a Cohort must have one entry per patient")
        if n == 0:
            raise ValueError(f"cohort {self.name!r} has no patients; loosen min_visits or check the data")

    def __len__(self) -> int:
        return len(self.patient_ids)

    def subset(self, idx: np.ndarray) -> Cohort:
        idx = np.asarray(idx)
        return Cohort(
            self.name, self.vocab, self.patient_ids[idx], [self.visits[i] for i in idx],
            [self.visit_dates[i] for i in idx], self.index_dates[idx], self.labels[idx],
        )

    def summary(self) -> dict[str, float]:
        lengths = np.array([len(v) for v in self.visits])
        return {
            "patients": len(self), "positives": int(self.labels.sum()), "prevalence": float(self.labels.mean()),
            "codes": len(self.vocab), "mean_visits": float(lengths.mean()), "max_visits": int(lengths.max()),
        }


@dataclasses.dataclass
class PaddedBatch:
    """Model input: codes (N, T, C) with 0 as padding, days (N, T) before the last visit, lengths (N,), labels."""

    codes: torch.Tensor
    days: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.codes.shape[0]

    def take(self, idx: torch.Tensor | np.ndarray) -> PaddedBatch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return PaddedBatch(self.codes[idx], self.days[idx], self.lengths[idx], self.labels[idx])


def pad_cohort(cohort: Cohort, max_visits: int, max_codes: int) -> PaddedBatch:
    """Keep each patient's last ``max_visits`` visits and each visit's first ``max_codes`` codes (loaders order a
    visit's codes with ``interleave_by_type``), visits left-aligned.

    Time feature: days from each visit to the patient's last input visit (so nothing about the index date leaks).
    """
    n = len(cohort)
    codes = torch.zeros(n, max_visits, max_codes, dtype=torch.long)
    days = torch.zeros(n, max_visits, dtype=torch.float32)
    lengths = torch.zeros(n, dtype=torch.long)
    for i, (visits, dates) in enumerate(zip(cohort.visits, cohort.visit_dates)):
        visits, dates = visits[-max_visits:], dates[-max_visits:]
        lengths[i] = len(visits)
        gaps = (dates[-1] - dates).astype("timedelta64[D]").astype(np.float32)
        days[i, : len(visits)] = torch.from_numpy(gaps)
        for t, visit in enumerate(visits):
            kept = visit[:max_codes]
            codes[i, t, : len(kept)] = torch.tensor(kept, dtype=torch.long)
    return PaddedBatch(codes, days, lengths, torch.as_tensor(cohort.labels, dtype=torch.long))


@dataclasses.dataclass
class Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def patient_splits(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Patient-level train/validation/test indices, stratified by label when each class has >= 3 patients."""
    idx = np.arange(len(labels))
    stratify = labels if np.bincount(labels, minlength=2).min() >= 3 else None
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    rest_strat = labels[rest] if stratify is not None else None
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed + 1, stratify=rest_strat
    )
    return Splits(np.sort(train), np.sort(val), np.sort(test))


def training_subset(train: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A fixed-by-seed, label-stratified fraction of the training patients; smaller fractions are nested in larger."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    keep = []
    for cls in (0, 1):
        members = rng.permutation(train[labels[train] == cls])
        keep.append(members[: max(1, round(fraction * len(members)))] if len(members) else members)
    return np.sort(np.concatenate(keep))
