"""Benchmark (issue 8): jit compile time, meta-training steps/s and test episodes/s of each method.

python -m papers.himpp.bench --config papers/himpp/configs/small.yaml --out /tmp/himpp_bench [steps=20]
Timed steps = min(steps, 20) after one compiling call; test episodes use the config's query cap.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from papers.himpp.common import load_benchmark
from papers.himpp.config import HiMPPConfig
from papers.himpp.episodes import sample_episode, sample_test_episode
from papers.himpp.featurize import GraphCache
from papers.himpp.training import (
    episode_batch,
    episode_mesh,
    init_params,
    make_model,
    make_optimizer,
    make_scorers,
    make_train_step,
    score_episode,
    train_task_ids,
    usable_tasks,
)
from shared.runs import Run, entrypoint, load_config, parse_run_args


def bench_method(cfg: HiMPPConfig, bench: Any, cache: GraphCache) -> dict[str, float]:
    """Compile time and throughput of one method's train step and test episode."""
    model = make_model(cfg)
    params = init_params(model, cfg, bench, cache)
    opt_state = make_optimizer(cfg.lr, cfg.weight_decay).init(params)
    mesh = episode_mesh(cfg.devices, cfg.tasks_per_batch)
    step_fn = make_train_step(model, cfg.lr, cfg.weight_decay, mesh)
    rng = np.random.default_rng(cfg.seed)
    train_ids = train_task_ids(cfg, bench)
    n = min(cfg.steps, 20)
    balanced = cfg.train_queries == "balanced"
    shard = NamedSharding(mesh, PartitionSpec("episodes"))
    batches = [jax.device_put(episode_batch([sample_episode(bench.tasks[t], cfg.k_shot, cfg.n_query, rng, balanced)
                                             for t in rng.choice(train_ids, cfg.tasks_per_batch)], cache), shard)
               for _ in range(n + 1)]
    key = jax.random.key(0)
    t0 = time.perf_counter()
    params, opt_state, loss = step_fn(params, opt_state, *batches[0], key)
    jax.block_until_ready(loss)
    compile_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in batches[1:]:
        params, opt_state, loss = step_fn(params, opt_state, *b, key)
    jax.block_until_ready(loss)
    steps_per_s = n / (time.perf_counter() - t0)
    support_fn, query_fn = make_scorers(model)
    test_ids = usable_tasks(bench, bench.test_tasks, cfg.k_shot, 1)
    eps = [sample_test_episode(bench.tasks[test_ids[i % len(test_ids)]], cfg.k_shot, rng, cfg.test_max_queries,
                               cfg.test_keep_positives) for i in range(4)]
    t0 = time.perf_counter()
    score_episode(support_fn, query_fn, params, eps[0], cache, cfg.query_chunk)
    compile_test = time.perf_counter() - t0
    t0 = time.perf_counter()
    for ep in eps[1:]:
        score_episode(support_fn, query_fn, params, ep, cache, cfg.query_chunk)
    episodes_per_s = (len(eps) - 1) / (time.perf_counter() - t0)
    return {"compile_train_s": compile_train, "train_steps_per_s": steps_per_s,
            "compile_test_s": compile_test, "test_episodes_per_s": episodes_per_s,
            "queries_per_episode": float(np.mean([len(e.query_labels) for e in eps]))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__, default_out="/tmp/himpp_bench")
    cfg = load_config(HiMPPConfig, args.config, args.overrides)
    run = Run(args.out, cfg, tensorboard=False)
    cache = GraphCache()
    bench = load_benchmark(cfg.dataset, cache, cfg.fsmol_max_tasks_per_split)
    results = {m: bench_method(dataclasses.replace(cfg, method=m), bench, cache) for m in cfg.methods}
    device = jax.devices()[0]
    lines = [f"device: {device.platform} ({device.device_kind}); {cfg.dataset} {cfg.k_shot}-shot, "
             f"{cfg.tasks_per_batch} episodes per step",
             "| method | compile train (s) | train steps/s | compile test (s) | test episodes/s | queries/episode |",
             "|---|---|---|---|---|---|"]
    for m, r in results.items():
        lines.append(f"| {m} | {r['compile_train_s']:.1f} | {r['train_steps_per_s']:.2f} | {r['compile_test_s']:.1f}"
                     f" | {r['test_episodes_per_s']:.2f} | {r['queries_per_episode']:.0f} |")
    text = "\n".join(lines)
    print(text)
    (Path(args.out) / "bench.md").write_text(text + "\n")
    (Path(args.out) / "bench.json").write_text(json.dumps({"device": str(device), "results": results}, indent=2))
    return run.finish({"device": str(device), **{f"{m}/{k}": v for m, r in results.items() for k, v in r.items()}})


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
