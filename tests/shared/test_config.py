from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from shared.runs import ConfigError, load_config, to_dict


@dataclasses.dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])


@dataclasses.dataclass
class Cfg:
    steps: int = 10
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    optim: Optim = dataclasses.field(default_factory=Optim)

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError("steps must be positive")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(Cfg, _write(tmp_path, "steps: 5\noptim:\n  lr: 1e-4\n"), ["optim.betas=[0.0, 0.99]", "mode=b", "limit=3"])
    assert cfg.steps == 5 and cfg.mode == "b" and cfg.limit == 3
    assert cfg.optim.lr == pytest.approx(1e-4)  # PyYAML reads 1e-4 as a string; the float field takes it
    assert cfg.optim.betas == [0.0, 0.99]
    assert to_dict(cfg)["optim"]["betas"] == [0.0, 0.99]


def test_unknown_key_lists_valid_keys_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, _write(tmp_path, "stepz: 5\n"))
    assert "'stepz'" in str(err.value) and "did you mean 'steps'" in str(err.value)
    assert "valid keys: limit, mode, name, optim, steps" in str(err.value)


def test_nested_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key.*'learning_rate'.*valid keys: betas, lr"):
        load_config(Cfg, None, ["optim.learning_rate=0.1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [("steps=ten", "expected an integer"), ("steps=1.5", "expected an integer"), ("mode=c", "not one of"),
     ("name=3", "expected a string"), ("steps=-1", "steps must be positive"), ("steps", "must look like key=value")],
)
def test_bad_values(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, [override])


def test_missing_file_and_bad_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Cfg, _write(tmp_path, "- 1\n- 2\n"))


@dataclasses.dataclass
class Pattern:
    sparsity_type: str = "unstructured"
    steps: int = 1
    lr: float = 0.1


def test_colon_values_stay_strings(tmp_path: Path) -> None:
    # YAML 1.1 would read 2:4 as the base-60 number 124; an N:M pattern must stay a string.
    cfg = load_config(Pattern, _write(tmp_path, "sparsity_type: 4:8\nsteps: 12\nlr: 1.5e-3\n"), ["steps=0x10"])
    assert cfg.sparsity_type == "4:8" and cfg.steps == 16 and cfg.lr == pytest.approx(1.5e-3)
    assert load_config(Pattern, None, ["sparsity_type=2:4"]).sparsity_type == "2:4"
