"""Bad configs and missing data fail clearly; training resumes bit-for-bit after an interruption."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from papers.himpp import train as train_entry
from papers.himpp.config import HiMPPConfig
from papers.himpp.training import CHECKPOINT, train
from shared.runs import ConfigError, load_config
from shared.runs.checkpoint import save_checkpoint

from .conftest import SMOKE


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="k_shot"):
        load_config(HiMPPConfig, SMOKE, ["k_shots=3"])


@pytest.mark.parametrize(("override", "message"), [
    ("method=relationnet", "unknown method"), ("dataset=qm9", "unknown dataset"), ("k_shot=0", "k_shot"),
    ("n_query=1", "n_query"), ("dropout=1.5", "dropout")])
def test_bad_values_are_rejected(override: str, message: str) -> None:
    with pytest.raises((ValueError, ConfigError), match=message):
        load_config(HiMPPConfig, SMOKE, [override])


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEWSHOT_MPP_DIR", str(tmp_path))
    with pytest.raises(Exception, match="no task files"):
        train_entry.main(["--config", str(SMOKE), "--out", str(tmp_path / "run")])


def test_resume_after_interruption_matches_an_uninterrupted_run(smoke_cfg, sider, cache, tmp_path) -> None:
    cfg = dataclasses.replace(smoke_cfg, method="protonet", steps=4, checkpoint_every=2)
    full, info_full = train(cfg, sider, tmp_path / "full", cache, progress=False)
    train(dataclasses.replace(cfg, steps=2), sider, tmp_path / "cut", cache, progress=False)  # "killed" at 2
    resumed, info_resumed = train(cfg, sider, tmp_path / "cut", cache, progress=False)
    assert info_resumed["losses"] == info_full["losses"]
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_damaged_checkpoint_is_a_clear_error(smoke_cfg, sider, cache, tmp_path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(b"not a pickle")
    with pytest.raises(Exception, match="delete it"):
        train(smoke_cfg, sider, tmp_path, cache, progress=False)
    save_checkpoint(tmp_path / CHECKPOINT, {"params": {}})
    with pytest.raises(KeyError):
        train(smoke_cfg, sider, tmp_path, cache, progress=False)
