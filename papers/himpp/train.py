"""Meta-train one method on one benchmark and test it: python -m papers.himpp.train --config ... --out ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from papers.himpp.common import initial_encoder, load_benchmark, train_and_test
from papers.himpp.config import HiMPPConfig
from papers.himpp.featurize import GraphCache
from shared.runs import entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(HiMPPConfig, args.config, args.overrides)
    out = Path(args.out)
    cache = GraphCache()
    bench = load_benchmark(cfg.dataset, cache, cfg.fsmol_max_tasks_per_split)
    init, _ = initial_encoder(cfg, bench, cache, out)
    metrics = train_and_test(cfg, out, cache, bench, init)
    print(f"{cfg.method} {cfg.dataset} {cfg.k_shot}-shot: test ROC-AUC {metrics['roc_auc']:.4f}")
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
