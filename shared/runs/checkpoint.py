"""Atomic checkpoints: write to a temporary file, fsync, then rename, so the last complete one always survives."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (missing, truncated or not a checkpoint)."""


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 less the umask), not mkstemp's private 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Save ``state`` atomically. ``.pt`` uses torch.save (tensors, optimizers); anything else uses pickle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if path.suffix == ".pt":
                import torch

                torch.save(state, fh)
            else:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, _file_mode())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; one clear error if it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        if path.suffix == ".pt":
            import torch

            state = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with open(path, "rb") as fh:
                state = pickle.load(fh)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is damaged or truncated and cannot be read: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state
