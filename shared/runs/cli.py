"""The command line every entry point shares: ``--config FILE --out DIR [key=value ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_run_args(argv: Sequence[str] | None, description: str, default_out: str | None = None) -> argparse.Namespace:
    """Parse ``--config``, ``--out`` and trailing ``key=value`` overrides for an entry point's ``main(argv)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config, e.g. papers/<name>/configs/small.yaml")
    parser.add_argument("--out", default=default_out, required=default_out is None, help="run directory to write")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (nested: a.b=value)")
    return parser.parse_args(list(argv) if argv is not None else None)
