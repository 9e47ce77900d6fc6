"""Run helpers every paper needs: strict YAML configs, run folders, checkpoints and the entry-point CLI."""

from shared.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from shared.runs.cli import entrypoint, parse_run_args
from shared.runs.config import ConfigError, load_config, to_dict
from shared.runs.errors import RunDirError, UserError
from shared.runs.rundir import Run, latest_checkpoint

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Run",
    "RunDirError",
    "UserError",
    "entrypoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "parse_run_args",
    "save_checkpoint",
    "to_dict",
]
