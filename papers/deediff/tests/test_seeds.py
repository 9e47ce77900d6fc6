"""The reports over several runs: the seeds table (per-seed gaps, a call only when every seed agrees, seeds that
fail a gate left out) and the fine-tuning validation curves of several runs in one figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from papers.deediff import report, seeds
from shared.runs import UserError


def write_run(folder: Path, seed: int, static_gap: tuple[float, float, float], deediff_accuracy: float = 0.8) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"seed: {seed}\n")
    rows = [{"config": "baseline full", "threshold": None, "layer_fraction": 1.0, "fid": 30.0 + seed, "class_accuracy": 0.85},
            {"config": "deediff full", "threshold": None, "layer_fraction": 1.0, "fid": 40.0, "class_accuracy": deediff_accuracy},
            {"config": "deediff exit 0.9", "threshold": 0.9, "layer_fraction": 0.5, "fid": 45.0, "class_accuracy": 0.7,
             "flops_fraction": 0.5},
            {"config": f"deediff static {3 + seed % 2}/9", "threshold": None, "layer_fraction": 0.4, "fid": 50.0,
             "class_accuracy": 0.6, "flops_fraction": 0.4}]  # below the exit's compute, at another depth per seed
    gap, lo, hi = static_gap
    comps = [{"a": "deediff full", "b": "baseline full", "gap": 10.0 - seed, "ci_low": 5.0, "ci_high": 15.0},
             {"a": "deediff exit 0.9", "b": f"deediff static {3 + seed % 2}/9", "gap": gap, "ci_low": lo, "ci_high": hi}]
    (folder / "eval.json").write_text(json.dumps({"rows": rows, "comparisons": comps, "feature_net": "net",
                                                  "eval_samples": 500}))
    return folder


def claim_line(text: str, row: str, what: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {row} | {what}"))


def test_a_claim_is_called_only_when_every_seed_agrees(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / f"s{s}", s, g) for s, g in
            ((0, (-5.0, -8.0, -2.0)), (1, (-3.0, -6.0, -0.5)), (2, (-1.0, -4.0, 2.0)))]
    text = seeds.main([*map(str, runs), "--out", str(tmp_path / "seeds.md")])
    assert (tmp_path / "seeds.md").read_text() == text
    assert claim_line(text, "deediff full", "vs the baseline").endswith("| 9.00 +- 0.58 | worse |")  # gaps 10, 9, 8
    static = claim_line(text, "deediff exit 0.9", "vs static truncation at less")  # 3/9 or 4/9 by seed
    assert static.endswith("| mixed |") and "-3.00 +- 1.15" in static
    assert "| baseline full | 100.0% | 30.00 | 31.00 | 32.00 | 31.00 +- 0.58 |" in text


def test_seeds_failing_a_gate_are_left_out_and_duplicates_refused(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / "s0", 0, (-5.0, -8.0, -2.0)), write_run(tmp_path / "s1", 1, (-3.0, -6.0, -1.0)),
            write_run(tmp_path / "s2", 2, (4.0, 1.0, 7.0), deediff_accuracy=0.2)]
    text = seeds.report(runs)
    assert "Seed 2 is left out of the claims" in text and "0.200 < 0.5" in text
    assert claim_line(text, "deediff exit 0.9", "vs static truncation at less").endswith("| better |")
    with pytest.raises(UserError, match="share seeds"):
        seeds.report([runs[0], runs[0]])
    with pytest.raises(UserError, match="not a finished"):
        seeds.report([tmp_path])


def test_validation_curves_of_several_runs_in_one_figure(tmp_path: Path) -> None:
    for name, fids in (("lr_a", [300.0, 90.0]), ("lr_b", [400.0, 250.0])):
        (tmp_path / name).mkdir()
        curve = [{"stage_step": s, "val_fid": f, "val_class_accuracy": 0.5} for s, f in zip((500, 1000), fids)]
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "finetune_validation": curve, "finetune_selected_step": 1000, "baseline_val_fid": 40.0,
            "baseline_val_class_accuracy": 0.9}))
    path = report.main([str(tmp_path / "lr_a"), str(tmp_path / "lr_b"), "--out", str(tmp_path / "curves.png")])
    assert path == tmp_path / "curves.png" and path.stat().st_size > 10_000
    with pytest.raises(UserError, match="no metrics.json"):
        report.main([str(tmp_path), "--out", str(tmp_path / "x.png")])
