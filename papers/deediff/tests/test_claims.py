"""The quality gate on the baseline, the claims table's verdicts, bootstrap intervals and the per-step schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from papers.deediff.config import Config
from papers.deediff.evaluate import comparisons, fewer_steps, static_bracket
from papers.deediff.model import UViT
from papers.deediff.report import claims_section, quality_gate
from papers.deediff.stats import bootstrap_ci, fid_ci, fid_of, normal_bootstrap_ci, paired_fid_gap
from papers.deediff.sweep import ExitPolicy
from shared.metrics import FeatureStats


def result_with(accuracy: float | None, gap_ci: tuple[float, float] = (1.0, 3.0), deediff_accuracy: float = 0.8) -> dict:
    base = {"config": "baseline full", "threshold": None, "n_layers": None}
    if accuracy is not None:
        base["class_accuracy"] = accuracy
    exit_row = {"config": "deediff exit 0.9", "threshold": 0.9, "n_layers": None, "flops_fraction": 0.55,
                "speedup_wallclock": 1.8, "layer_fraction": 0.5}
    comps = [{"a": "deediff exit 0.9", "b": "deediff full", "gap": 2.0, "ci_low": gap_ci[0], "ci_high": gap_ci[1]},
             {"a": "deediff exit 0.9", "b": "deediff static 5/9", "gap": -0.5, "ci_low": -1.0, "ci_high": 0.2},
             {"a": "deediff exit 0.9", "b": "deediff schedule 0.9", "gap": -4.0, "ci_low": -6.0, "ci_high": -2.0}]
    comps.append({"a": "deediff full", "b": "baseline full", "gap": 5.0, "ci_low": 3.0, "ci_high": 7.0})
    deediff = {"config": "deediff full", "threshold": None, "n_layers": None, "class_accuracy": deediff_accuracy,
               "flops_fraction": 1.0}
    static = {"config": "deediff static 5/9", "threshold": None, "n_layers": 5, "flops_fraction": 0.52}
    schedule = {"config": "deediff schedule 0.9", "threshold": None, "n_layers": None, "flops_fraction": 0.55}
    return {"rows": [base, deediff, exit_row, static, schedule], "comparisons": comps}


def test_gate_withholds_claims_when_the_baseline_does_not_generate() -> None:
    text, reason = claims_section(result_with(0.118))
    assert reason is not None and "0.118 < 0.5" in reason
    assert "withheld" in text and "| claim |" not in text
    assert quality_gate(result_with(None)) is not None  # no class accuracy: cannot be checked, so withheld
    assert quality_gate(result_with(0.49)) is not None and quality_gate(result_with(0.5)) is None


def test_gate_keeps_only_the_full_depth_claim_when_the_deediff_model_does_not_generate() -> None:
    text, reason = claims_section(result_with(0.67, deediff_accuracy=0.19))
    assert reason is not None and "deediff model's samples have class accuracy 0.190 < 0.5" in reason
    assert "DeeDiff model at full depth vs the baseline" in text and "(worse)" in text  # still reported
    assert "deediff exit" not in text and "early-exit claims are withheld" in text


def test_claims_table_verdicts_follow_the_intervals() -> None:
    text, reason = claims_section(result_with(0.85))
    assert reason is None
    lines = [line for line in text.splitlines() if "deediff exit 0.9" in line]
    assert len(lines) == 3
    assert "(worse)" in lines[0]  # interval [1, 3] excludes zero
    assert "(no gap)" in lines[1] and "static truncation at less compute (52% FLOPs)" in lines[1]  # [-1, 0.2] holds 0
    assert "(better)" in lines[2]


def test_bootstrap_interval_matches_scipy() -> None:
    x = np.random.default_rng(0).normal(size=200)
    ours = bootstrap_ci(lambda idx: float(x[idx].mean()), len(x), 4000, seed=1)
    ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                                random_state=np.random.default_rng(2)).confidence_interval
    np.testing.assert_allclose(ours, (ref.low, ref.high), atol=0.15 * x.std() / np.sqrt(len(x)) * 4)


def test_normal_bootstrap_interval_of_a_mean_is_the_textbook_one() -> None:
    x = np.random.default_rng(0).normal(size=400)
    lo, hi = normal_bootstrap_ci(lambda idx: float(x[idx].mean()), len(x), 4000, seed=1)
    se = x.std(ddof=1) / np.sqrt(len(x))  # the bootstrap SD of a mean is s / sqrt(n)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=1e-12)
    assert (hi - lo) / 2 == pytest.approx(scipy_stats.norm.ppf(0.975) * se, rel=0.05)


def test_fid_interval_is_centred_although_resampling_biases_fid_upwards() -> None:
    rng = np.random.default_rng(0)  # many dimensions, a small true gap: the regime of the real sweeps
    ref = FeatureStats.from_features(rng.normal(size=(5000, 32)), "toy")
    close = rng.normal(size=(200, 32)) + 0.05
    resampled = [fid_of(close[rng.integers(0, 200, 200)], ref) for _ in range(50)]
    assert min(resampled) > fid_of(close, ref)  # every percentile interval would miss the estimate
    lo, hi = fid_ci(close, ref, n_boot=50)
    assert lo < fid_of(close, ref) < hi and (lo + hi) / 2 == pytest.approx(fid_of(close, ref))


def test_fid_intervals_cover_the_estimate_and_a_paired_self_gap_is_zero() -> None:
    rng = np.random.default_rng(0)
    ref = FeatureStats.from_features(rng.normal(size=(2000, 4)), "toy")
    shifted = rng.normal(size=(300, 4)) + 0.5
    lo, hi = fid_ci(shifted, ref, n_boot=100)
    assert lo < fid_of(shifted, ref) < hi
    assert paired_fid_gap(shifted, shifted, ref, n_boot=20) == {"gap": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    gap = paired_fid_gap(shifted + 1.0, shifted, ref, n_boot=100)  # much further from the reference
    assert gap["ci_low"] > 0
    with pytest.raises(ValueError, match="equal sample sets"):
        paired_fid_gap(shifted[:10], shifted, ref, n_boot=5)


def test_comparisons_pair_each_exit_with_full_the_bracketing_static_depths_and_schedule() -> None:
    rows = [{"config": c, "threshold": t, "layer_fraction": f} for c, t, f in (
        ("baseline full", None, 1.0), ("deediff full", None, 1.0), ("deediff exit 0.9", 0.9, 0.55),
        ("deediff exit 0.95", 0.95, 0.99), ("deediff exit 0.97", 0.97, 2 / 3), ("deediff static 4/9", None, 4 / 9),
        ("deediff static 5/9", None, 5 / 9), ("deediff static 6/9", None, 6 / 9), ("deediff static 8/9", None, 8 / 9),
        ("deediff schedule 0.9", None, 0.55), ("deediff schedule 0.95", None, 0.99))]
    assert static_bracket(0.55, 9) == (4, 5) and static_bracket(2 / 3, 9) == (6, 6) and static_bracket(0.99, 9) == (8, 9)
    assert comparisons(rows, 9) == [
        ("deediff full", "baseline full"), ("deediff exit 0.9", "deediff full"), ("deediff exit 0.9", "deediff static 4/9"),
        ("deediff exit 0.9", "deediff static 5/9"), ("deediff exit 0.9", "deediff schedule 0.9"),
        ("deediff exit 0.95", "deediff full"), ("deediff exit 0.95", "deediff static 8/9"),
        ("deediff exit 0.95", "deediff schedule 0.95"), ("deediff exit 0.97", "deediff full"),
        ("deediff exit 0.97", "deediff static 6/9")]


def test_schedule_policy_runs_each_step_at_its_depth() -> None:
    torch.manual_seed(0)
    cfg = Config(image_size=8, patch_size=2, embed_dim=16, depth=4, num_heads=2, num_classes=3)
    model = UViT(cfg).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([100.0, 900.0]), torch.tensor([0, 2])
    fn = ExitPolicy("schedule", schedule=(2, 5)).model_fn(model)
    with torch.no_grad():
        for k in (2, 5):
            out, depth = fn(x, t, y)
            torch.testing.assert_close(out, model(x, t, y, n_layers=k), rtol=0, atol=0)
            assert depth.tolist() == [k, k]
        with pytest.raises(ValueError, match="shorter than the sampler's steps"):
            fn(x, t, y)


def test_each_exit_is_also_compared_with_the_baseline_at_fewer_steps_and_about_its_flops() -> None:
    rows = [{"config": "baseline full", "threshold": None, "layer_fraction": 1.0, "sample_steps": 20, "flops_fraction": 1.0},
            {"config": "deediff full", "threshold": None, "layer_fraction": 1.0, "sample_steps": 20, "flops_fraction": 1.0},
            {"config": "deediff exit 0.9", "threshold": 0.9, "layer_fraction": 0.5, "sample_steps": 20, "flops_fraction": 0.56},
            {"config": "deediff exit 0.97", "threshold": 0.97, "layer_fraction": 0.99, "sample_steps": 20,
             "flops_fraction": 0.99},
            {"config": "baseline ddim 11 steps", "threshold": None, "layer_fraction": 1.0, "sample_steps": 11,
             "flops_fraction": 0.55}]
    assert fewer_steps(0.56, 20) == 11 and fewer_steps(0.99, 20) == 20 and fewer_steps(0.01, 20) == 1
    pairs = comparisons(rows, 9)
    assert ("deediff exit 0.9", "baseline ddim 11 steps") in pairs
    assert ("deediff exit 0.97", "baseline full") in pairs  # about all the compute: the baseline itself
    result = {"rows": rows, "comparisons": [{"a": a, "b": b, "gap": 1.0, "ci_low": 0.5, "ci_high": 1.5} for a, b in pairs]}
    result["rows"][0]["class_accuracy"] = result["rows"][1]["class_accuracy"] = 0.9
    for r in rows:
        r["speedup_wallclock"] = 1.0
    text, _ = claims_section(result)
    assert "vs the baseline sampled with 11 steps (55% FLOPs) (baseline ddim 11 steps) | (not in the paper) | +1.00" in text
