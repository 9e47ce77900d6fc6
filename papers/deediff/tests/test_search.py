"""The overfit-first protocol and the baseline search: outputs, the choice, and the checksummed weight cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papers.deediff import diagnose, search
from papers.deediff.diffusion import VPSDE

CONFIGS = Path(__file__).parents[1] / "configs"
SMOKE = str(CONFIGS / "smoke.yaml")


def test_one_per_class_takes_the_first_image_of_each_class() -> None:
    labels = torch.tensor([2, 0, 0, 1, 2, 1, 0])
    assert diagnose.one_per_class(labels, 3).tolist() == [1, 3, 0]
    assert diagnose.one_per_class(labels, 6).tolist() == [1, 3, 0, 2, 5, 4]
    with pytest.raises(ValueError, match="multiple of the 3 classes"):
        diagnose.one_per_class(labels, 4)


def test_overfit_protocol_runs_uvit_and_unet_reference(tmp_path: Path) -> None:
    result = diagnose.main(["--config", SMOKE, "--out", str(tmp_path), "overfit=10", "arch=both", "max_steps=1",
                            "eval_every=1", "sample_steps=2"])
    assert set(result["runs"]) == {"uvit", "unet"} and len(result["train_indices"]) == 10
    for run in result["runs"].values():
        assert [r["step"] for r in run["curve"]] == [1]
        assert all(0 <= r["class_accuracy"] <= 1 and r["mse_to_training_image"] > 0 for r in run["curve"])
        assert run["steps_to_target"] in (None, 1)
        assert all(r["label_gap"] == pytest.approx(r["mse_wrong_label"] - r["mse_right_label"]) for r in run["curve"])
    assert result["runs"]["unet"]["parameters"] > 100_000  # the diffusers UNet2DModel reference
    assert (tmp_path / "overfit.json").exists() and (tmp_path / "overfit_curves.png").exists()
    assert diagnose.steps_to([{"step": 5, "class_accuracy": 0.8}, {"step": 9, "class_accuracy": 0.95}], 0.9) == 9


class _Lookup(torch.nn.Module):
    """Predicts the noise exactly when its label is right (it looks the noise up by label), else zero; or, with
    ``use_label=False``, always a quarter of the noise."""

    def __init__(self, noise: torch.Tensor, labels: torch.Tensor, use_label: bool) -> None:
        super().__init__()
        self.noise, self.labels, self.use_label = noise, labels, use_label

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.use_label:
            return 0.25 * self.noise
        return self.noise * (y == self.labels).float().view(-1, 1, 1, 1)


def test_label_reliance_is_zero_for_a_model_that_ignores_labels() -> None:
    sde = VPSDE()
    x0, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
    noise = torch.ones(4, 1, 2, 2)
    ignores = diagnose.label_reliance(_Lookup(noise, y, use_label=False), sde, x0, y, noise)
    assert ignores["mse_right_label"] == pytest.approx(0.75**2) and ignores["label_gap"] == 0.0
    uses = diagnose.label_reliance(_Lookup(noise, y, use_label=True), sde, x0, y, noise)
    assert uses == pytest.approx({"mse_right_label": 0.0, "mse_wrong_label": 1.0, "label_gap": 1.0})


@pytest.mark.slow  # three searches of two candidates each
def test_search_picks_by_class_accuracy_and_reuses_checksummed_weights(tmp_path: Path) -> None:
    spec = tmp_path / "search.yaml"
    spec.write_text(json.dumps({
        "base": SMOKE, "overrides": ["sample_steps=2", "warmup_steps=1"], "steps": 1, "eval_every": 1,
        "eval_samples": 10, "cache": str(tmp_path / "cache"),
        "candidates": {"a": [], "b": ["long_skip=false"]}}))
    first = search.main(["--config", str(spec), "--out", str(tmp_path / "s1")])
    report = json.loads((tmp_path / "s1" / "search.json").read_text())
    accs = {n: (c["final_class_accuracy"], -c["final_fid"]) for n, c in report["candidates"].items()}
    assert report["chosen"] == max(accs, key=accs.get) and first["reached_target"] in (0, 1, False, True)
    weights = Path(report["chosen_weights"])
    assert weights.is_relative_to(tmp_path / "cache") and search.file_sha256(weights) == report["chosen_sha256"]
    assert not any(c["reused"] for c in report["candidates"].values())
    assert all("label_gap" in row for c in report["candidates"].values() for row in c["curve"])
    search.main(["--config", str(spec), "--out", str(tmp_path / "s2")])  # same configs: nothing retrained
    again = json.loads((tmp_path / "s2" / "search.json").read_text())
    assert all(c["reused"] for c in again["candidates"].values()) and again["chosen_sha256"] == report["chosen_sha256"]
    weights.write_bytes(weights.read_bytes() + b"corrupt")  # a damaged cache entry is retrained, not trusted
    search.main(["--config", str(spec), "--out", str(tmp_path / "s3")])
    third = json.loads((tmp_path / "s3" / "search.json").read_text())
    assert not third["candidates"][report["chosen"]]["reused"]


def test_search_snapshots_every_evaluation_and_stops_above_stop_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"base": SMOKE, "overrides": ["sample_steps=2", "warmup_steps=1"], "steps": 3, "eval_every": 1,
            "eval_samples": 10, "cache": str(tmp_path / "cache"), "candidates": {"a": []}}
    (tmp_path / "full.yaml").write_text(json.dumps(spec))
    full = search.main(["--config", str(tmp_path / "full.yaml"), "--out", str(tmp_path / "f")])
    entry = json.loads((tmp_path / "f" / "search.json").read_text())["candidates"]["a"]
    folder = Path(entry["weights"]).parent
    assert sorted(p.name for p in folder.glob("ema-step*.pt")) == ["ema-step1.pt", "ema-step2.pt", "ema-step3.pt"]
    assert [r["step"] for r in entry["curve"]] == [1, 2, 3] and full["reached_target"] == (
        entry["final_class_accuracy"] >= 0.8)
    last, final = (torch.load(folder / n, weights_only=False) for n in ("ema-step3.pt", "baseline.pt"))
    assert last["step"] == final["step"] == 3
    for k, v in final["model"].items():  # the last snapshot is the final EMA model
        torch.testing.assert_close(last["model"][k], v, rtol=0, atol=0)

    monkeypatch.setattr(search, "sample_scores", lambda *a: {"class_accuracy": 0.9, "fid": 50.0})
    (tmp_path / "stop.yaml").write_text(json.dumps({**spec, "stop_accuracy": 0.85}))
    search.main(["--config", str(tmp_path / "stop.yaml"), "--out", str(tmp_path / "s")])
    stopped = json.loads((tmp_path / "s" / "search.json").read_text())
    assert [r["step"] for r in stopped["candidates"]["a"]["curve"]] == [1] and stopped["reached_target"]
    assert torch.load(stopped["chosen_weights"], weights_only=False)["step"] == 1
    assert Path(stopped["chosen_weights"]).parent != folder  # stop_accuracy is part of the cache key


def test_search_config_rejects_a_stop_accuracy_outside_0_1() -> None:
    with pytest.raises(ValueError, match="stop_accuracy"):
        search.SearchConfig(base=SMOKE, candidates={"a": []}, stop_accuracy=1.5)


def test_cache_key_ignores_fine_tuning_and_sweep_keys_but_not_baseline_ones() -> None:
    spec = search.SearchConfig(base=SMOKE, candidates={"a": []})
    cfg = search.candidate_config(spec, CONFIGS, [])
    key = search.config_hash(cfg, spec)
    for after_baseline in (["finetune_lr=0.5"], ["thresholds=[0.5]"], ["layerwise_weight=0"], ["threads=3"]):
        assert search.config_hash(search.candidate_config(spec, CONFIGS, after_baseline), spec) == key
    for baseline in (["lr=0.5"], ["embed_dim=48"], ["seed=1"], ["sample_steps=7"]):  # the stop rule samples too
        assert search.config_hash(search.candidate_config(spec, CONFIGS, baseline), spec) != key


def test_finetune_from_search_fine_tunes_the_cached_search_baseline(tmp_path: Path) -> None:
    import yaml

    from papers.deediff import train
    from papers.deediff.config import Config
    from shared.runs import load_config

    spec = tmp_path / "search.yaml"
    spec.write_text(json.dumps({"base": SMOKE, "overrides": ["sample_steps=2", "warmup_steps=1"], "steps": 2,
                                "eval_every": 2, "eval_samples": 10, "cache": str(tmp_path / "cache"),
                                "candidates": {"a": []}}))
    args = ["baseline_steps=0", f"finetune_from_search={spec}", "finetune_steps=2", "sample_steps=2"]
    reused = []
    for run in ("t1", "t2"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / run), *args])
        record = next((tmp_path / "cache" / "runs").iterdir()) / "search.json"  # the search's run beside its weights
        first = json.loads(record.read_text())
        reused.append(first["candidates"]["a"]["reused"])
    assert reused == [False, True]  # trained once, then reused
    resolved = yaml.safe_load((tmp_path / "t1" / "config.yaml").read_text())
    assert resolved["finetune_from"] == first["chosen_weights"] and resolved["finetune_from_search"] == ""
    assert (tmp_path / "t1" / "weights" / "deediff.pt").exists()
    with pytest.raises(ValueError, match="resolved by the entry points"):
        train.train(load_config(Config, SMOKE, args), tmp_path / "t3")
