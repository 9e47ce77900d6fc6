"""Resume after interruption, determinism, and clear errors for bad configs and missing data."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from papers.owl import evaluate, sequential, train
from shared.data import DataMissingError
from shared.runs import ConfigError

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "pruned_model" / "model.safetensors")


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["method=owl_sparsegpt", "sparsity=0.6"]
    train.main(["--config", SMOKE, "--out", str(tmp_path / "full"), *args])
    real_prune_block = sequential.prune_block

    def crash_at_block_2(block, plan, index, stats):
        if index == 2:
            raise KeyboardInterrupt
        real_prune_block(block, plan, index, stats)

    monkeypatch.setattr(sequential, "prune_block", crash_at_block_2)
    with pytest.raises(KeyboardInterrupt):
        train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *args])
    assert (tmp_path / "cut" / "checkpoints" / "block_001.pt").is_file()
    monkeypatch.setattr(sequential, "prune_block", real_prune_block)
    metrics = train.main(["--config", SMOKE, "--out", str(tmp_path / "cut"), *args])
    assert metrics["resumed_from_block"] == 2
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(full[key], resumed[key], atol=0, rtol=0)


def test_same_seed_same_pruned_model(tmp_path: Path) -> None:
    for name in ("a", "b"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / name), "method=owl_wanda"])
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("override,message", [
    ("sparsity=1.0", "sparsity"), ("sparsity=-0.2", "sparsity"), ("owl_m=0", "owl_m"), ("owl_m=-3", "owl_m"),
    ("model=gpt2", "model"), ("method=random", "method"), ('sparsity_type="3:2"', "N:M"), ("sparsity_type=3:2", "N:M"), ("calib_corpus=wiki103", "corpus"),
    ("no_such_key=1", "valid keys"),
])
def test_bad_config_is_refused(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train.main(["--config", SMOKE, "--out", str(tmp_path), override])


def test_missing_data_names_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("SHAKESPEARE_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataMissingError, match="shakespeare"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / "run"), "calib_corpus=shakespeare"])


def test_evaluate_without_a_pruned_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="papers.owl.train"):
        evaluate.main(["--config", SMOKE, "--out", str(tmp_path)])


def test_paper_config_names_the_papers_model_and_data() -> None:
    from papers.owl.config import Config
    from shared.runs import load_config

    cfg = load_config(Config, Path(__file__).parents[1] / "configs" / "paper.yaml")
    assert (cfg.model, cfg.calib_corpus, cfg.eval_corpora) == ("hf:huggyllama/llama-7b", "c4", ["wikitext2"])
    assert (cfg.n_calib, cfg.calib_len, cfg.eval_window) == (128, 2048, 2048)


def test_hub_model_and_corpora_fail_clearly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from papers.owl.corpora import corpus_text
    from papers.owl.models import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="cannot load model"):
        load_model(f"hf:{tmp_path / 'no_model'}")
    with pytest.raises(FileNotFoundError, match="needs the Hugging Face hub or a local datasets cache"):
        corpus_text("wikitext2", "test", max_chars=100)


def test_owl_lambda_bound_depends_on_the_sparsity_type(tmp_path: Path) -> None:
    from papers.owl.config import Config
    from shared.runs import load_config

    with pytest.raises(ConfigError, match=r"owl_lambda must lie in \[0, 0.5\)"):
        load_config(Config, SMOKE, ["owl_lambda=2"])
    assert load_config(Config, SMOKE, ['sparsity_type="5:8"', "owl_lambda=2", "owl_m=6"]).owl_lambda == 2


def test_per_layer_owl_gives_each_linear_its_own_ratio(tmp_path: Path) -> None:
    import json

    train.main(["--config", SMOKE, "--out", str(tmp_path), "method=owl_wanda", "owl_granularity=layer",
                "owl_lambda=0.2", "save_model=false"])
    report = json.loads((tmp_path / "layer_report.json").read_text())
    layer_s = [s for block in report["assigned_layer_sparsity"] for s in block.values()]
    assert len(set(round(s, 9) for s in layer_s)) > 4 and abs(sum(layer_s) / len(layer_s) - 0.7) < 1e-9
    achieved = report["achieved_layer_sparsity"]
    for block_s, block_a in zip(report["assigned_layer_sparsity"], achieved, strict=True):
        for name, s in block_s.items():
            assert abs(block_a[name] - s) < 0.02


def test_eval_bos_puts_one_bos_token_first() -> None:
    from papers.owl.corpora import tokenize

    class Tok:
        bos_token_id = 7

        def __call__(self, text: str, add_special_tokens: bool) -> dict:
            return {"input_ids": [ord(c) for c in text]}

    assert tokenize("ab", Tok(), bos=True).tolist() == [7, 97, 98]
    assert tokenize("ab", Tok()).tolist() == [97, 98]
