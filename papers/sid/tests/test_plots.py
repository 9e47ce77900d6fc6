"""The FID-vs-samples plot over several reproduce folders (one per seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from papers.sid import plots


def _fake_run(root: Path, teacher_fid: float) -> Path:
    run = root / "image"
    run.mkdir(parents=True)
    rows = [{"round": r, "images_seen": 32 * r, "eval_fid": 100.0 / r, "eval_raw_fid": 150.0 / r} for r in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (run / "eval.json").write_text(json.dumps({"rows": [{"sampler": "teacher Heun 35 NFE", "fid": teacher_fid}]}))
    return root


def test_plot_of_several_seed_folders_is_written_where_asked(tmp_path: Path) -> None:
    runs = [_fake_run(tmp_path / f"s{i}", 70.0 + i) for i in range(3)]
    out = plots.main([*map(str, runs), "--out", str(tmp_path / "curve.png")])
    assert out == tmp_path / "curve.png" and out.stat().st_size > 1000
    assert plots.main([str(runs[0])]) == runs[0] / "fid_vs_images.png"


def test_plot_without_image_runs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no image/"):
        plots.main([str(tmp_path)])
