"""Training: determinism under a seed, exact resume after an interruption, clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papers.deediff import train
from papers.deediff.config import Config
from shared.runs import ConfigError, load_checkpoint, load_config

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")
QUICK = ["baseline_steps=4", "finetune_steps=3", "checkpoint_every=2"]


def weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "weights" / f"{name}.pt")["model"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "a"), *QUICK])
    train.main(["--config", SMOKE, "--out", str(tmp_path / "b"), *QUICK])
    train.main(["--config", SMOKE, "--out", str(tmp_path / "c"), *QUICK, "seed=1"])
    assert_same(weights(tmp_path / "a", "deediff"), weights(tmp_path / "b", "deediff"))
    a, c = weights(tmp_path / "a", "deediff"), weights(tmp_path / "c", "deediff")
    assert not torch.equal(a["pos_embed"], c["pos_embed"])


def interrupt_at(stop: int, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    """Run train.main(argv) until it reaches step ``stop``, as if killed there, then restore the real batches."""
    real = train.batch_for_step

    def crash(cfg: Config, step: int, *args):
        if step == stop:
            raise KeyboardInterrupt("simulated interruption")
        return real(cfg, step, *args)

    monkeypatch.setattr(train, "batch_for_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train.main(argv)
    monkeypatch.setattr(train, "batch_for_step", real)


def test_resume_after_interruption_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "whole"), *QUICK])
    interrupt_at(6, monkeypatch, ["--config", SMOKE, "--out", str(tmp_path / "cut"), *QUICK])
    state = load_checkpoint(sorted((tmp_path / "cut" / "checkpoints").glob("step_*.pt"))[-1])
    assert (state["stage"], state["step"]) == ("deediff", 6)  # last complete checkpoint: step 6, in fine-tuning
    assert (tmp_path / "cut" / "weights" / "baseline.pt").exists()
    assert not (tmp_path / "cut" / "weights" / "deediff.pt").exists()
    metrics = train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *QUICK])
    assert metrics["steps"] == 7
    for name in ("baseline", "deediff"):
        assert_same(weights(tmp_path / "whole", name), weights(tmp_path / "cut", name))
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]  # smoke logs every step; nothing lost or repeated
    assert [r["stage"] for r in rows] == ["baseline"] * 4 + ["deediff"] * 3
    again = train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *QUICK])  # finished: nothing to do
    assert again["final_loss"] == metrics["final_loss"] and again["steps"] == 7


def test_bad_configs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key.*'threshhold'.*did you mean 'thresholds'"):
        load_config(Config, SMOKE, ["threshhold=0.9"])
    with pytest.raises(ConfigError, match="depth must be an even number"):
        load_config(Config, SMOKE, ["depth=5"])
    with pytest.raises(ConfigError, match="not divisible by patch_size"):
        load_config(Config, SMOKE, ["patch_size=5"])
    with pytest.raises(ConfigError, match="thresholds are certainties"):
        load_config(Config, SMOKE, ["thresholds=[0.5, 1.5]"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(Config, SMOKE, ["baseline_steps=many"])
    with pytest.raises(ConfigError, match="config file not found"):
        train.main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)])


def test_missing_data_and_wrong_shapes_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.data import DataMissingError

    with monkeypatch.context() as env:
        env.delenv("CIFAR10_DIR", raising=False)
        env.setenv("ML_PAPERS_DATA", str(tmp_path / "no_data"))
        with pytest.raises(DataMissingError, match="CIFAR10_DIR"):
            train.main(["--config", SMOKE, "--out", str(tmp_path / "a"), "dataset=cifar10", "finetune_eval_every=0"])
    with pytest.raises(KeyError, match="unknown data set 'imagenet'"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / "c"), "dataset=imagenet", "finetune_eval_every=0"])
    with pytest.raises(ValueError, match="config says channels=3"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / "b"), "channels=3"])


def test_evaluate_needs_trained_weights(tmp_path: Path) -> None:
    from papers.deediff import evaluate
    from shared.runs import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint"):
        evaluate.main(["--config", SMOKE, "--out", str(tmp_path)])


def test_finetune_from_a_baseline_keeps_its_backbone_and_fresh_uems(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "base"), *QUICK])
    baseline = tmp_path / "base" / "weights" / "baseline.pt"
    cfg_t = load_config(Config, SMOKE, ["uem_timestep_aware=true", "baseline_steps=0", f"finetune_from={baseline}"])
    code_uem = train.load_weights(baseline, load_config(Config, SMOKE))
    time_uem = train.load_weights(baseline, cfg_t, backbone_only=True)
    assert time_uem.uems[0].linear.in_features == 2 * code_uem.uems[0].linear.in_features  # [tokens, t]
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([10.0, 500.0, 990.0]), torch.tensor([0, 4, 9])
    with torch.no_grad():  # same backbone: identical noise predictions at every depth
        for k in (1, code_uem.n_layers):
            torch.testing.assert_close(time_uem(x, t, y, n_layers=k), code_uem(x, t, y, n_layers=k), rtol=0, atol=0)
    metrics = train.main(["--config", SMOKE, "--out", str(tmp_path / "tuned"), "uem_timestep_aware=true",
                          "baseline_steps=0", f"finetune_from={baseline}", "finetune_steps=2"])
    assert metrics["steps"] == 2 and "baseline_images_per_s" not in metrics
    assert (tmp_path / "tuned" / "weights" / "deediff.pt").exists()
    assert not (tmp_path / "tuned" / "weights" / "baseline.pt").exists()
    rows = [json.loads(line) for line in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["deediff", "deediff"]


def test_finetune_from_needs_a_matching_backbone_and_no_baseline_stage(tmp_path: Path) -> None:
    train.main(["--config", SMOKE, "--out", str(tmp_path / "base"), *QUICK])
    baseline = tmp_path / "base" / "weights" / "baseline.pt"
    wider = load_config(Config, SMOKE, ["embed_dim=64", "baseline_steps=0", f"finetune_from={baseline}"])
    with pytest.raises(ValueError, match="does not fit this config's U-ViT"):
        train.load_weights(baseline, wider, backbone_only=True)
    with pytest.raises(ConfigError, match="one of finetune_from"):
        load_config(Config, SMOKE, [f"finetune_from={baseline}"])  # baseline_steps > 0 as well
    with pytest.raises(ConfigError, match="one of finetune_from"):
        load_config(Config, SMOKE, ["baseline_steps=0"])


def test_synthetic_data_have_the_config_shape_and_are_seeded(tmp_path: Path) -> None:
    from papers.deediff.data import load_images

    cfg = load_config(Config, SMOKE, ["dataset=synthetic", "channels=3", "image_size=8", "patch_size=2",
                                      "finetune_eval_every=0"])
    x, y = load_images(cfg, "train", limit=20)
    assert x.shape == (20, 3, 8, 8) and x.min() >= -1 and x.max() <= 1 and y.tolist() == [i % 10 for i in range(20)]
    torch.testing.assert_close(load_images(cfg, "train", limit=20)[0], x, rtol=0, atol=0)
    assert not torch.equal(load_images(cfg, "test", limit=20)[0], x)


def test_fourteen_pixel_mnist_is_the_two_by_two_average_of_the_full_images() -> None:
    from papers.deediff.data import at_size, load_images

    full, _ = load_images(load_config(Config, SMOKE), "test", limit=4)
    small, _ = load_images(load_config(Config, SMOKE, ["image_size=14", "patch_size=7"]), "test", limit=4)
    assert small.shape == (4, 1, 14, 14)
    torch.testing.assert_close(small[:, :, 3, 5], full[:, :, 6:8, 10:12].mean((-1, -2)))
    assert at_size(small).shape == (4, 1, 28, 28) and at_size(full) is full


def test_ema_warms_up_from_scratch_but_starts_at_the_pretrained_weights_when_fine_tuning() -> None:
    ema, model = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    for warmup, expected in ((True, 0.1 * 2.0 + 0.9 * 6.0), (False, 0.99 * 2.0 + 0.01 * 6.0)):
        ema.weight.data.fill_(2.0)
        model.weight.data.fill_(6.0)
        train.update_ema(ema, model, 0.99, stage_step=0, warmup=warmup)  # step 0: decay (1 + 0) / (10 + 0)
        assert ema.weight.item() == pytest.approx(expected)


def test_fine_tuning_lr_has_its_own_warm_up() -> None:
    cfg = load_config(Config, SMOKE, ["warmup_steps=2", "finetune_warmup_steps=10"])
    assert train.lr_at(cfg, 0, 1.0) == pytest.approx(0.5)
    assert train.lr_at(cfg, 0, 1.0, cfg.finetune_warmup_steps) == pytest.approx(0.1)
    assert train.lr_at(cfg, 9, 1.0, cfg.finetune_warmup_steps) == train.lr_at(cfg, 50, 1.0, 10) == 1.0


VALIDATED = [*QUICK, "finetune_steps=5", "finetune_eval_every=2", "finetune_eval_samples=10", "sample_steps=2"]


def test_fine_tuning_keeps_the_snapshot_with_the_best_validation_fid(tmp_path: Path) -> None:
    metrics = train.main(["--config", SMOKE, "--out", str(tmp_path / "v"), *VALIDATED])
    rows = [json.loads(line) for line in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in rows if "val_fid" in r]
    assert [r["step"] for r in scored] == [5, 7, 8]  # fine-tuning steps 2, 4 and the last (5) of 4 + 5 steps
    assert [r["stage_step"] for r in metrics["finetune_validation"]] == [2, 4, 5]
    best = min(metrics["finetune_validation"], key=lambda r: r["val_fid"])
    assert metrics["finetune_selected_step"] == best["stage_step"] and metrics["finetune_selected_val_fid"] == best["val_fid"]
    assert metrics["baseline_val_fid"] > 0 and 0 <= metrics["baseline_val_class_accuracy"] <= 1  # the starting point
    folder = tmp_path / "v" / "weights"
    chosen = load_checkpoint(folder / f"deediff-step{best['stage_step']}.pt")
    assert chosen["val_fid"] == best["val_fid"] and load_checkpoint(folder / "deediff.pt")["step"] == best["stage_step"]
    assert_same(weights(tmp_path / "v", "deediff"), chosen["model"])
    # validation samples with their own generators: training (the last EMA model) is the run's without it
    train.main(["--config", SMOKE, "--out", str(tmp_path / "plain"), *QUICK, "finetune_steps=5", "sample_steps=2"])
    last = {run: load_checkpoint(sorted((tmp_path / run / "checkpoints").glob("step_*.pt"))[-1])["ema"]
            for run in ("v", "plain")}
    assert_same(last["v"], last["plain"])
    assert_same(load_checkpoint(folder / "deediff-step5.pt")["model"], last["v"])


def test_validation_selection_survives_an_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = train.main(["--config", SMOKE, "--out", str(tmp_path / "whole"), *VALIDATED])
    interrupt_at(7, monkeypatch, ["--config", SMOKE, "--out", str(tmp_path / "cut"), *VALIDATED])
    resumed = train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *VALIDATED])
    assert resumed["finetune_validation"] == whole["finetune_validation"]
    assert_same(weights(tmp_path / "whole", "deediff"), weights(tmp_path / "cut", "deediff"))


def test_validation_needs_a_feature_network() -> None:
    with pytest.raises(ConfigError, match="needs the repo's feature network"):
        load_config(Config, SMOKE, ["dataset=cifar10", "channels=3", "finetune_eval_every=5"])


def test_cached_weights_have_one_folder_per_resolved_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path))
    paths = {seed: load_config(Config, SMOKE, ['weights_dir="@cache/w"', f"seed={seed}"]).weights_path("anywhere")
             for seed in (0, 1)}
    assert paths[0].parent == tmp_path / "deediff" / "w" and paths[0] != paths[1]  # seeds never share weights
    assert load_config(Config, SMOKE, ['weights_dir="@cache/w"']).weights_path("elsewhere") == paths[0]
