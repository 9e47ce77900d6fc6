"""A small synthetic cohort for fast tests: positives carry code 1 in their last visit."""

from __future__ import annotations

import numpy as np

from papers.meddiffusion.cohort import Cohort, Vocabulary


def toy_cohort(n: int = 120, seed: int = 0) -> Cohort:
    rng = np.random.default_rng(seed)
    vocab = Vocabulary(f"c{i}" for i in range(1, 11))
    labels = (rng.random(n) < 0.4).astype(np.int64)
    visits, dates = [], []
    for y in labels:
        length = int(rng.integers(1, 7))
        vs = [sorted(set(rng.integers(2, 11, size=int(rng.integers(1, 4))).tolist())) for _ in range(length)]
        if y:
            vs[-1] = sorted(set(vs[-1]) | {1})
        visits.append(vs)
        dates.append(np.datetime64("2020-01-01") + np.cumsum(rng.integers(1, 60, size=length)).astype("timedelta64[D]"))
    index = np.array([d[-1] + np.timedelta64(1, "D") for d in dates], dtype="datetime64[D]")
    return Cohort("toy", vocab, np.arange(n), visits, dates, index, labels)
