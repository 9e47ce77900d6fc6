"""The command line every entry point shares (``--config FILE --out DIR [key=value ...]``) and its error handling."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from shared.runs.errors import UserError

DEBUG_ENV = "ML_PAPERS_DEBUG"


def parse_run_args(
    argv: Sequence[str] | None, description: str, default_out: str | None = None, *, multi_process: bool = False
) -> argparse.Namespace:
    """Parse ``--config``, ``--out``, ``--overwrite``, ``--debug`` and trailing ``key=value`` overrides.

    ``multi_process`` marks an entry point wired for torch.distributed; any other refuses to run under torchrun
    (WORLD_SIZE > 1), where every process would otherwise run the same job into the same folder.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config, e.g. papers/<name>/configs/small.yaml")
    parser.add_argument("--out", default=default_out, required=default_out is None, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help="move an existing --out of another config aside")
    parser.add_argument("--debug", action="store_true", help=f"full tracebacks on errors (or set {DEBUG_ENV}=1)")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (nested: a.b=value)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not multi_process:
        raise UserError(
            f"this entry point runs in one process, but WORLD_SIZE={world_size}: "
            "launch it with python, not torchrun/accelerate (only train.py of the torch papers is multi-process)"
        )
    return args


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user must change something (config, folder, data), not that the code is broken."""
    from shared.data.registry import DataCorruptError, DataMissingError
    from shared.runs.checkpoint import CheckpointError
    from shared.runs.config import ConfigError

    return (UserError, ConfigError, DataMissingError, DataCorruptError, CheckpointError)


def entrypoint(main: Callable[[list[str] | None], Any], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` as a command: 0 on success; a user error prints one or two lines and returns 2.

    The traceback is printed only with ``--debug`` or ML_PAPERS_DEBUG=1. Use as
    ``if __name__ == "__main__": raise SystemExit(entrypoint(main))``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        main(args)
    except user_error_types() as err:
        from shared.runs.rundir import abandon_fresh_runs

        abandon_fresh_runs()
        if "--debug" in args or os.environ.get(DEBUG_ENV) == "1":
            traceback.print_exc()
        name = "error" if isinstance(err, UserError) else type(err).__name__
        print(f"{name}: {err}", file=sys.stderr)
        print(f"(the run stopped; add --debug or set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
    return 0
