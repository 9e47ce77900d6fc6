"""Training determinism, resume after interruption, metrics, and clear errors for bad configs and missing data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, cohen_kappa_score, f1_score, precision_recall_curve

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import (
    build_model,
    epoch_batches,
    fit,
    load_cohort,
    make_optimizer,
    prepare,
    read_predictions,
    score,
    tuned_threshold,
)
from papers.meddiffusion.metrics import average_precision, bootstrap, interval, pr_auc_trapezoid
from papers.meddiffusion.reference import code_counts
from papers.meddiffusion.tests.toy import toy_cohort
from shared.data.registry import DataMissingError
from shared.runs import ConfigError, load_config

SMOKE = Path(__file__).parents[1] / "configs" / "smoke.yaml"
TINY = dict(max_visits=6, max_codes=4, embed_dim=8, hidden_dim=8, denoiser_channels=8, diffusion_steps=50,
            batch_size=32, epochs=3, patience=10, threads=1, bootstrap_resamples=50)


def _untimed(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("steps_per_s", "samples_per_s")}


def _prepared(cfg: Config):
    return prepare(cfg, toy_cohort(160))


@pytest.mark.parametrize("model", ["meddiffusion", "dipole"])
def test_training_is_deterministic_under_a_seed(tmp_path: Path, model: str) -> None:
    cfg = Config(model=model, **TINY)
    a = fit(cfg, _prepared(cfg), tmp_path / "a", tensorboard=False, progress=False)
    b = fit(cfg, _prepared(cfg), tmp_path / "b", tensorboard=False, progress=False)
    assert _untimed(a) == _untimed(b) and a["finished"]
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
    assert _untimed(resumed) == _untimed(straight)
    steps = [json.loads(r)["step"] for r in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]


def test_learns_the_toy_signal(tmp_path: Path) -> None:
    cfg = Config(model="lstm", augment=False, **{**TINY, "epochs": 8, "embed_dim": 16, "hidden_dim": 16, "lr": 0.01})
    metrics = fit(cfg, prepare(cfg, toy_cohort(300)), tmp_path, tensorboard=False, progress=False)
    assert metrics["test_pr_auc"] > 0.9 and metrics["test_f1"] > 0.8  # positives carry code 1 in their last visit


def test_score_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.round(np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1), 2)  # with ties
    got = score(labels, probs)
    pred = (probs >= 0.5).astype(int)
    precision, recall, _ = precision_recall_curve(labels, probs)
    assert got["pr_auc"] == pytest.approx(average_precision_score(labels, probs))
    assert got["pr_auc_trapz"] == pytest.approx(auc(recall, precision))  # the official code's PR-AUC
    assert got["f1"] == pytest.approx(f1_score(labels, pred))
    assert got["kappa"] == pytest.approx(cohen_kappa_score(labels, pred))
    cut = tuned_threshold(labels, probs)
    f1s = [f1_score(labels, (probs >= c).astype(int)) for c in np.unique(probs)]
    assert cut == np.unique(probs)[int(np.argmax(f1s))]  # the lowest cut reaching the best F1


@pytest.mark.parametrize("levels", [3, 10, 0])
def test_numpy_pr_aucs_match_sklearn_with_ties(levels: int) -> None:
    rng = np.random.default_rng(levels)
    labels = rng.integers(0, 2, 200)
    probs = rng.random(200) + 0.4 * labels
    if levels:
        probs = np.round(probs * levels) / levels  # many tied scores
    precision, recall, _ = precision_recall_curve(labels, probs)
    assert average_precision(labels, probs) == pytest.approx(average_precision_score(labels, probs), abs=1e-12)
    assert pr_auc_trapezoid(labels, probs) == pytest.approx(auc(recall, precision), abs=1e-12)


def test_bootstrap_interval_is_seeded_and_pairs_resamples() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 270)
    probs = rng.random(270) + 0.3 * labels
    a = bootstrap(labels, [probs], average_precision, resamples=200, seed=3)
    assert np.array_equal(a, bootstrap(labels, [probs], average_precision, resamples=200, seed=3))
    lo, hi = interval(a)
    assert lo < average_precision(labels, probs) < hi and hi - lo > 0.02
    same = bootstrap(labels, [probs, probs], lambda y, p, q: average_precision(y, p) - average_precision(y, q),
                     resamples=50)
    assert np.all(same == 0)  # the same rows go to both score arrays


def test_weight_decay_spares_biases_and_norms() -> None:
    torch.manual_seed(0)
    model = build_model(Config(**TINY), 10)
    groups = make_optimizer(Config(**TINY), model).param_groups
    decayed, spared = ({id(p) for p in g["params"]} for g in groups)
    assert groups[0]["weight_decay"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    assert not decayed & spared and len(decayed | spared) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        is_norm = ".norm" in name or name.startswith("augmenter.denoiser.out.0")
        assert (id(p) in spared) == (name.endswith("bias") or is_norm), name
    # with zero loss gradients only the decayed parameters move
    opt = make_optimizer(Config(**TINY), model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "classifier.net.0.weight" in moved and not any(n.endswith("bias") for n in moved)


def test_balanced_batches_follow_the_official_sampler() -> None:
    labels = np.array([1] * 30 + [0] * 170)
    train = np.arange(200)
    batches = epoch_batches(train, labels, 16, True, torch.Generator().manual_seed(0))
    assert len(batches) == min(30 // 4, 170 // 12) == 7
    assert all(len(b) == 16 and labels[b.numpy()].sum() == 4 for b in batches)
    flat = torch.cat(batches).tolist()
    assert len(flat) == len(set(flat))
    plain = epoch_batches(train, labels, 16, False, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(plain).tolist()) == list(range(200))
    with pytest.raises(ValueError, match="positives"):
        epoch_batches(train[30:40], labels, 16, True, torch.Generator().manual_seed(0))


def test_saved_predictions_reproduce_the_metrics(tmp_path: Path) -> None:
    cfg = Config(**{**TINY, "epochs": 2})
    prepared = _prepared(cfg)
    metrics = fit(cfg, prepared, tmp_path, tensorboard=False, progress=False)
    saved = read_predictions(tmp_path / "predictions.csv")
    ids, labels, probs = saved["test"]
    assert np.array_equal(ids, prepared.patient_ids[prepared.splits.test])
    assert metrics["test_pr_auc_trapz"] == pytest.approx(pr_auc_trapezoid(labels, probs), abs=1e-6)
    lo, hi = metrics["test_pr_auc_ci"]
    assert lo <= metrics["test_pr_auc"] <= hi


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
    ("structure=fancy", "structure"),
    ("augmenter=vae", "augmenter"),
    ("optimizer=sgd", "optimizer"),
])
def test_bad_configs_fail_clearly(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Config, SMOKE, [override])
    with pytest.raises(ConfigError, match="balanced"):
        load_config(Config, SMOKE, ["balanced=true", "batch_size=2"])


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
