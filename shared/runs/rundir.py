"""A run folder: one config, its provenance, metrics.jsonl, TensorBoard, rolling checkpoints and a text log.

A folder belongs to the config that created it (``run_info.json`` records its sha256). Re-using it with the same
config resumes; another config, or a non-empty folder that is not a run, is refused unless ``overwrite`` moves the
old folder aside. Under torchrun only rank 0 writes; every rank reads the checkpoint it resumes from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from shared.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from shared.runs.config import to_dict
from shared.runs.errors import RunDirError

_TRACKED_PACKAGES = (
    "torch", "transformers", "diffusers", "datasets", "peft", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
    "scikit-learn", "rdkit",
)
_SHARED_ROOT = Path(__file__).resolve().parents[2]
_CHECKPOINT = re.compile(r"step_(\d+)\.(pt|pkl)$")
_BOOKKEEPING = {"config.yaml", "run_info.json", "run.log", "tensorboard"}
_FRESH: list[Path] = []  # folders this process created, for abandon_fresh_runs


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The commit at ``repo`` (default: shared's own checkout) and whether its tree is dirty (None outside git)."""
    cwd = repo or _SHARED_ROOT
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "repo": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "repo": top.stdout.strip()}


def provenance() -> dict[str, Any]:
    """The caller's repository state (where the main script lives, else the working directory), plus shared's
    own when that is another checkout (``shared`` borrowed by another project)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    caller = git_commit(Path(main_file).resolve().parent if main_file else Path.cwd())
    if caller["repo"] is None:
        caller = git_commit(Path.cwd())
    info = dict(caller)
    own = git_commit()
    if own["repo"] != caller["repo"]:
        info["shared"] = own
    return info


def package_versions(names: tuple[str, ...] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def config_digest(resolved: dict[str, Any]) -> str:
    """sha256 of the resolved config, independent of key order."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def _rank() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except ImportError:
        pass
    return int(os.environ.get("RANK", "0"))


def _barrier() -> None:
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints a :class:`Run` saved in ``run_dir``, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.fullmatch(p.name)))


def latest_checkpoint(run_dir: str | Path, logger: logging.Logger | None = None) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``run_dir`` (an unreadable newest one is skipped), or None."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path)
        except CheckpointError as err:
            (logger or logging.getLogger(__name__)).warning("skipping unreadable checkpoint at step %d: %s", step, err)
    return None


class Run:
    """Owns ``out_dir`` for one config: config.yaml, run_info.json, metrics.jsonl, TensorBoard, checkpoints/,
    run.log and, at the end, metrics.json."""

    def __init__(
        self,
        out_dir: str | Path,
        config: Any,
        *,
        tensorboard: bool = True,
        overwrite: bool = False,
        keep_checkpoints: int = 3,
    ) -> None:
        self.dir = Path(out_dir)
        self.config = config
        self.is_main = _rank() == 0
        self.keep_checkpoints = int(getattr(config, "keep_checkpoints", keep_checkpoints))
        if self.keep_checkpoints < 1:
            raise RunDirError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        resolved = config if isinstance(config, dict) else to_dict(config)
        self.config_sha256 = config_digest(resolved)
        reused = False
        if self.is_main:  # other ranks wait: under torchrun a refusal on rank 0 ends them all
            reused = self._claim(overwrite)
            if not reused:
                _FRESH.append(self.dir)
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write_provenance(resolved, reused)
        _barrier()
        self.logger = self._make_logger()
        if reused:
            self.logger.info("reusing run folder %s (same config)", self.dir)
        self._tensorboard = tensorboard
        self._writer: Any = None
        self._start_step: int | None = None

    # -- folder ownership ---------------------------------------------------------------------------------
    def _claim(self, overwrite: bool) -> bool:
        """True when ``dir`` is this config's run; moves a foreign folder aside under ``overwrite``, else refuses."""
        if not self.dir.exists():
            return False
        if not self.dir.is_dir():
            raise RunDirError(f"--out {self.dir} is a file, not a folder; choose another --out")
        if not any(self.dir.iterdir()):
            return False
        found = self._recorded_digest()
        if overwrite:
            self._move_aside()
            return False
        if found == self.config_sha256:
            return True
        what = ("a run of another config" if found else "not a run folder (no run_info.json with a config hash)")
        raise RunDirError(
            f"--out {self.dir} is {what}; writing there would mix results. "
            "Choose a new --out, or pass --overwrite to move the old folder aside."
        )

    def _recorded_digest(self) -> str | None:
        try:
            return json.loads((self.dir / "run_info.json").read_text()).get("config_sha256")
        except (OSError, ValueError, AttributeError):
            return None

    def _move_aside(self) -> None:
        aside = self.dir.with_name(f"{self.dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        self.dir.rename(aside)
        print(f"--overwrite: moved the old {self.dir} to {aside}", file=sys.stderr)

    def _write_provenance(self, resolved: dict[str, Any], reused: bool) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        info_path = self.dir / "run_info.json"
        if reused:
            info = json.loads(info_path.read_text())
            info.setdefault("attempts", []).append({"started": now, "argv": sys.argv, **provenance()})
        else:
            (self.dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
            info = {
                "config_sha256": self.config_sha256,
                "argv": sys.argv,
                "started": now,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "machine": platform.machine(),
                "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                "packages": package_versions(),
                **provenance(),
            }
        info_path.write_text(json.dumps(info, indent=2))

    def _make_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"shared.runs.{self.dir.resolve()}.rank{_rank()}")
        logger.handlers.clear()
        logger.propagate = False
        logger.setLevel(logging.INFO if self.is_main else logging.WARNING)
        fmt = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")
        handlers: list[logging.Handler] = [logging.StreamHandler()]
        if self.is_main:
            handlers.append(logging.FileHandler(self.dir / "run.log"))
        for handler in handlers:
            handler.setFormatter(fmt)
            logger.addHandler(handler)
        return logger

    # -- checkpoints ----------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of the saved checkpoints, oldest first."""
        return list_checkpoints(self.dir)

    def save_checkpoint(self, state: dict[str, Any], step: int, suffix: str = ".pt") -> Path:
        """Atomically save ``state`` as the checkpoint after ``step`` completed steps; keep the newest K."""
        path = self.checkpoint_dir / f"step_{int(step):08d}{suffix}"
        if self.is_main:
            save_checkpoint(path, {**state, "step": int(step)})
            for _, old in self.checkpoints()[: -self.keep_checkpoints]:
                old.unlink(missing_ok=True)
        _barrier()
        return path

    def restore(self) -> dict[str, Any] | None:
        """The newest readable checkpoint's state (None without one); drops logged rows at or after its step."""
        _barrier()
        state = latest_checkpoint(self.dir, self.logger)
        start = int(state["step"]) if state is not None else 0
        if state is not None:
            self.logger.info("resuming from step %d (%s)", start, self.dir)
        self._truncate(start)
        return state

    # -- metrics ----------------------------------------------------------------------------------------------
    def _truncate(self, start: int) -> None:
        """Keep only rows logged before ``start``: a resumed run continues its curve instead of repeating it."""
        self._start_step = start
        path = self.dir / "metrics.jsonl"
        if self.is_main and path.exists():
            kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] < start]
            path.write_text("".join(f"{line}\n" for line in kept))

    def log(self, step: int, **metrics: Any) -> None:
        """Append one row to metrics.jsonl and each finite scalar to TensorBoard (rank 0 only)."""
        if self._start_step is None:  # nothing restored: an earlier attempt's rows are stale
            self._truncate(0)
        if not self.is_main:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        writer = self._tensorboard_writer()
        if writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(key, value, step)

    def _tensorboard_writer(self) -> Any:
        if self._writer is None and self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = self._start_step or None  # TensorBoard hides an earlier attempt's events from this step on
            self._writer = SummaryWriter(log_dir=str(self.dir / "tensorboard"), purge_step=purge)
        return self._writer

    def history(self) -> list[dict[str, Any]]:
        """Rows logged so far (a resumed run's earlier rows included)."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def finish(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write the final metrics.json (rank 0), close TensorBoard and return the metrics."""
        clean = {k: _plain(v) for k, v in metrics.items()}
        if self.is_main:
            (self.dir / "metrics.json").write_text(json.dumps(clean, indent=2))
        self.close()
        return clean

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for handler in self.logger.handlers:
            handler.flush()


def abandon_fresh_runs() -> list[Path]:
    """Remove folders this process created that hold nothing but bookkeeping (a run stopped by a user error
    before it produced anything); returns what was removed. Folders with metrics or checkpoints stay."""
    import shutil

    removed = []
    for folder in reversed(_FRESH):
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= _BOOKKEEPING:
            shutil.rmtree(folder)
            removed.append(folder)
    _FRESH.clear()
    return removed


def _plain(value: Any) -> Any:
    """numpy / torch / jax scalars to Python numbers so json can write them."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
