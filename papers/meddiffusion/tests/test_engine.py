"""Training determinism, resume after interruption, metrics, and clear errors for bad configs and missing data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, cohen_kappa_score, f1_score

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import build_model, fit, load_cohort, prepare, score, tuned_threshold
from papers.meddiffusion.reference import code_counts
from papers.meddiffusion.tests.toy import toy_cohort
from shared.data.registry import DataMissingError
from shared.runs import ConfigError, load_config

SMOKE = Path(__file__).parents[1] / "configs" / "smoke.yaml"
TINY = dict(max_visits=6, max_codes=4, embed_dim=8, hidden_dim=8, denoiser_channels=8, diffusion_steps=50,
            batch_size=32, epochs=4, patience=10, threads=1)


def _prepared(cfg: Config):
    return prepare(cfg, toy_cohort(160))


@pytest.mark.parametrize("model", ["meddiffusion", "dipole"])
def test_training_is_deterministic_under_a_seed(tmp_path: Path, model: str) -> None:
    cfg = Config(model=model, **TINY)
    a = fit(cfg, _prepared(cfg), tmp_path / "a", tensorboard=False, progress=False)
    b = fit(cfg, _prepared(cfg), tmp_path / "b", tensorboard=False, progress=False)
    assert a == b and a["finished"]
    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert rows_a == (tmp_path / "b" / "metrics.jsonl").read_text()
    fit(Config(model=model, seed=7, **TINY), _prepared(cfg), tmp_path / "c", tensorboard=False, progress=False)
    assert (tmp_path / "c" / "metrics.jsonl").read_text() != rows_a


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = Config(**TINY)
    straight = fit(cfg, _prepared(cfg), tmp_path / "straight", tensorboard=False, progress=False)
    partial = fit(cfg, _prepared(cfg), tmp_path / "resumed", tensorboard=False, progress=False, stop_after=2)
    assert partial == {"finished": False, "epochs_run": 2}
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = fit(cfg, _prepared(cfg), tmp_path / "resumed", tensorboard=False, progress=False)
    assert resumed == straight
    steps = [json.loads(r)["step"] for r in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]


def test_learns_the_toy_signal(tmp_path: Path) -> None:
    cfg = Config(model="lstm", augment=False, **{**TINY, "epochs": 8, "embed_dim": 16, "hidden_dim": 16, "lr": 0.01})
    metrics = fit(cfg, prepare(cfg, toy_cohort(300)), tmp_path, tensorboard=False, progress=False)
    assert metrics["test_pr_auc"] > 0.9 and metrics["test_f1"] > 0.8  # positives carry code 1 in their last visit


def test_score_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)
    got = score(labels, probs)
    pred = (probs >= 0.5).astype(int)
    assert got["pr_auc"] == pytest.approx(average_precision_score(labels, probs))
    assert got["f1"] == pytest.approx(f1_score(labels, pred))
    assert got["kappa"] == pytest.approx(cohen_kappa_score(labels, pred))
    cut = tuned_threshold(labels, probs)
    best = max(f1_score(labels, (probs >= c).astype(int)) for c in np.unique(probs))
    assert f1_score(labels, (probs >= cut).astype(int)) == pytest.approx(best)


def test_one_class_split_gives_nan_auc_not_a_crash() -> None:
    got = score(np.zeros(5, dtype=int), np.linspace(0, 1, 5))
    assert np.isnan(got["pr_auc"]) and got["f1"] == 0.0


def test_model_size_follows_the_config() -> None:
    small = build_model(Config(**TINY), 10)
    large = build_model(Config(**{**TINY, "embed_dim": 16}), 10)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(large) > count(small)
    assert isinstance(small(torch.zeros(2, 6, 4, dtype=torch.long), torch.zeros(2, 6), torch.tensor([1, 2]))["logits"],
                      torch.Tensor)


@pytest.mark.parametrize("override, message", [
    ("hidden_dimm=3", "did you mean 'hidden_dim'"),
    ("task=mortality", "has tasks"),
    ("max_visits=7", "even"),
    ("model=bert", "unknown model"),
    ("variants=[Nope]", "unknown variant"),
    ("train_fraction=0", "train_fraction"),
    ("attention=sometimes", "attention"),
])
def test_bad_configs_fail_clearly(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Config, SMOKE, [override])


def test_missing_data_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="mimic3"):
        load_cohort(Config(dataset="mimic3", task="mortality", data_root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="Eunomia"):
        load_cohort(Config(data_root=str(tmp_path)))


def test_code_counts_match_a_python_count() -> None:
    cohort = toy_cohort(20)
    cfg = Config(**TINY)
    prepared = prepare(cfg, cohort)
    counts = code_counts(prepared.data, prepared.vocab_size)
    for i in range(20):
        expected = np.zeros(len(cohort.vocab))
        for visit in cohort.visits[i][-cfg.max_visits:]:
            for code in visit[: cfg.max_codes]:
                expected[code - 1] += 1
        np.testing.assert_array_equal(counts[i], expected)
