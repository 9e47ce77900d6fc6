"""Meta-test trained parameters on the benchmark's test tasks (Sec. 4.1): mean ROC-AUC over test tasks.

python -m papers.himpp.evaluate --config ... --out TRAIN_RUN_DIR [checkpoint=PATH]; writes TRAIN_RUN_DIR/eval/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from papers.himpp.common import load_benchmark
from papers.himpp.config import HiMPPConfig
from papers.himpp.featurize import GraphCache
from papers.himpp.training import CHECKPOINT, evaluate
from shared.runs import Run, entrypoint, load_checkpoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(HiMPPConfig, args.config, args.overrides)
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else Path(args.out) / CHECKPOINT
    params = load_checkpoint(ckpt)["params"]
    cache = GraphCache()
    run = Run(Path(args.out) / "eval", cfg)
    metrics = evaluate(cfg, load_benchmark(cfg.dataset, cache, cfg.fsmol_max_tasks_per_split), params, cache)
    metrics.update(method=cfg.method, dataset=cfg.dataset, k_shot=cfg.k_shot, checkpoint=str(ckpt))
    print(f"{cfg.method} {cfg.dataset} {cfg.k_shot}-shot: test ROC-AUC {metrics['roc_auc']:.4f}")
    return run.finish(metrics)


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
