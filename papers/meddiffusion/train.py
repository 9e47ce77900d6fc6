"""Train one model: ``python -m papers.meddiffusion.train --config FILE --out DIR [key=value ...]``.

Resumes from the latest checkpoint in ``DIR/checkpoints/``; writes metrics.json (validation and test metrics of the
epoch with the best validation F1, plus throughput and first/final training loss) and best_model.pt. Runs on CPU or
CUDA (``device``, ``precision``), accumulates gradients (``micro_batch_size``) and runs under
``torchrun --nproc_per_node N`` with the same global batches and augmentation noise as one process.
"""

from __future__ import annotations

from typing import Any

from papers.meddiffusion.config import Config
from papers.meddiffusion.engine import fit, load_cohort, prepare
from shared.accel import setup_training
from shared.runs import entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__, multi_process=True)
    cfg = load_config(Config, args.config, args.overrides)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size,
                         strategy=cfg.strategy)
    metrics = fit(cfg, prepare(cfg, load_cohort(cfg)), args.out, overwrite=args.overwrite, progress=ctx.is_main,
                  ctx=ctx)
    if ctx.is_main:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    ctx.close()
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
