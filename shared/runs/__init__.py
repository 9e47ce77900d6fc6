"""Run helpers every paper needs: strict YAML configs, run directories, checkpoints and the entry-point CLI."""

from shared.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from shared.runs.cli import parse_run_args
from shared.runs.config import ConfigError, load_config, to_dict
from shared.runs.rundir import Run

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Run",
    "load_checkpoint",
    "load_config",
    "parse_run_args",
    "save_checkpoint",
    "to_dict",
]
