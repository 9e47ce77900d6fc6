"""Helpers for tests of multi-process training: the torchrun command and environment for a CPU (gloo) run, a
checked launch, and an interruption simulated on a finished run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.runs.rundir import list_checkpoints

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


def torchrun_cmd(module: str, args: Sequence[str], nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE ARGS`` (a free port each time)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *args]


def torchrun_env(**extra: str) -> dict[str, str]:
    """This process's environment without torchrun's variables, one CPU thread per process, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", TQDM_DISABLE="1", **extra)
    return env


def run_torchrun(module: str, args: Sequence[str], nproc: int = 2, timeout: float = 300, **env: str) -> str:
    """Launch ``module`` under torchrun with :func:`torchrun_env` (plus ``env``); fail with the tail of its stderr
    unless it exits 0; return its stderr (rank 0's log lines)."""
    done = subprocess.run(torchrun_cmd(module, args, nproc), env=torchrun_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"torchrun {module} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stderr


def drop_newest_checkpoint(run_dir: str | Path) -> int:
    """Delete a finished run's newest checkpoint, as if the run had been killed just before writing it, and return
    the step of the newest one left: rerunning the same command must resume there and end with the same run."""
    saved = list_checkpoints(Path(run_dir))
    if len(saved) < 2:
        raise ValueError(f"{run_dir} holds {len(saved)} checkpoint(s); an interrupted run needs an earlier one")
    saved[-1][1].unlink()
    return saved[-2][0]
