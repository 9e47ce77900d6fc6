"""A run directory: resolved config, provenance, metrics.jsonl, TensorBoard curves and a final metrics.json."""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from shared.runs.config import to_dict

_TRACKED_PACKAGES = (
    "torch", "transformers", "diffusers", "datasets", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
    "scikit-learn", "rdkit",
)


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The current commit and whether the working tree has uncommitted changes (None outside git)."""
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions(names: tuple[str, ...] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class Run:
    """Owns ``out_dir``: writes config.yaml and run_info.json at start, metrics as they come, metrics.json at end."""

    def __init__(self, out_dir: str | Path, config: Any, *, tensorboard: bool = True) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        resolved = to_dict(config) if not isinstance(config, dict) else config
        (self.dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        info = {
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": platform.machine(),
            "packages": package_versions(),
            **git_commit(),
        }
        (self.dir / "run_info.json").write_text(json.dumps(info, indent=2))
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.dir / "tensorboard"))

    def log(self, step: int, **metrics: float) -> None:
        """Append one row to metrics.jsonl and each scalar to TensorBoard."""
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)

    def history(self) -> list[dict[str, Any]]:
        """Rows logged so far (including those of an earlier, resumed attempt)."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def finish(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write the final metrics.json and close TensorBoard; returns the metrics."""
        clean = {k: _plain(v) for k, v in metrics.items()}
        (self.dir / "metrics.json").write_text(json.dumps(clean, indent=2))
        self.close()
        return clean

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _plain(value: Any) -> Any:
    """numpy / torch / jax scalars to Python numbers so json can write them."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
