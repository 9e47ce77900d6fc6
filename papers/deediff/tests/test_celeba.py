"""dataset: celeba64 wired through train and evaluate, on a fixture of synthetic JPEGs in CelebA's layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from papers.deediff import reproduce
from papers.deediff.config import Config
from papers.deediff.data import load_images
from shared.data import images as shared_images
from shared.runs import load_config

PAPER_CELEBA = str(Path(__file__).parents[1] / "configs" / "paper_celeba64.yaml")
TINY = ["device=cpu", "embed_dim=16", "depth=2", "num_heads=2", "patch_size=16", "baseline_steps=2",
        "finetune_steps=2", "batch_size=4", "warmup_steps=1", "checkpoint_every=2", "log_every=1", "sample_steps=2",
        "eval_samples=4", "eval_batch_size=4", "thresholds=[0.5]", "bench_batch_sizes=[1]"]


@pytest.fixture
def celeba_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Six 178x218 aligned-face-sized JPEGs (4 train, 1 valid, 1 test) and their list_eval_partition.txt: black
    left of the face box's centre column (x = 89), white right of it, so the 64x64 crop is half -1, half +1."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    lines = []
    for i, part in enumerate([0, 0, 0, 0, 1, 2]):
        name = f"{i + 1:06d}.jpg"
        pixels = np.zeros((218, 178, 3), dtype=np.uint8)
        pixels[:, 89:] = 255
        Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=95)
        lines.append(f"{name} {part}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    digest = hashlib.md5((root / "list_eval_partition.txt").read_bytes(), usedforsecurity=False).hexdigest()
    monkeypatch.setitem(shared_images.CELEBA_MD5, "list_eval_partition.txt", digest)  # the fixture's own file
    return root


def test_celeba64_images_are_rgb_64_in_minus_one_one(celeba_dir: Path) -> None:
    cfg = load_config(Config, PAPER_CELEBA, [f"data_root={celeba_dir}"])
    x, y = load_images(cfg, "train")
    assert x.shape == (4, 3, 64, 64) and y.tolist() == [0, 0, 0, 0]
    # uint8 0..255 -> [-1, 1]; JPEG blurs only the columns next to the edge
    assert float((x[..., :28] + 1).abs().max()) < 0.05 and float((x[..., 36:] - 1).abs().max()) < 0.05
    assert load_images(cfg, "train", limit=2)[0].shape[0] == 2
    assert load_images(cfg, "test")[0].shape[0] == 1


def test_celeba64_must_be_unconditional(celeba_dir: Path) -> None:
    cfg = load_config(Config, PAPER_CELEBA, [f"data_root={celeba_dir}", "num_classes=10"])
    with pytest.raises(ValueError, match="no class labels"):
        load_images(cfg, "train")


def test_paper_celeba64_config_trains_and_evaluates(celeba_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(Config, PAPER_CELEBA)
    assert (cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.n_layers) == (4, 512, 12, 8, 13)  # U-ViT-S/4
    assert (cfg.channels, cfg.image_size, cfg.num_classes, cfg.bench_threshold) == (3, 64, 0, 0.95)
    out = tmp_path / "run"
    reproduce.main(["--config", PAPER_CELEBA, "--out", str(out), f"data_root={celeba_dir}",
                    f"weights_dir={tmp_path / 'weights'}", *TINY])
    result = json.loads((out / "results.json").read_text())
    assert result["feature_net"] is None  # no feature network for 64x64 RGB: no FID, said so
    assert all("fid" not in r and 0 < r["layer_fraction"] <= 1 for r in result["rows"])
    with np.load(out / "samples.npz") as npz:
        assert all(npz[k].shape == (4, 64, 64, 3) and npz[k].dtype == np.uint8 for k in npz.files)
    assert (out / "samples.png").exists() and (out / "exit_depth_vs_timestep.png").exists()
