"""Train one model: ``python -m papers.meddiffusion.train --config FILE --out DIR [key=value ...]``.

Resumes from the latest checkpoint in ``DIR/checkpoints/``; writes metrics.json (validation and test metrics of the epoch with the best
validation F1) and best_model.pt.
"""

from __future__ import annotations

from typing import Any

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import fit, load_cohort, prepare
from shared.runs import entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    metrics = fit(cfg, prepare(cfg, load_cohort(cfg)), args.out)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
