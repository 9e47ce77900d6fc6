"""Throughput of ModuleFormer against both dense baselines, and the cost of the expert layer against E.

    python -m papers.moduleformer.bench --config papers/moduleformer/configs/small.yaml --out runs/bench

Random weights and tokens (speed does not depend on training). Every number is the median of ``rounds`` timed
rounds (after a warm-up) with its min-max spread; in each round the variants run in turn, so a slow spell of a
shared machine hits all of them. Inference (forward, no gradients) and training (forward + backward, no
optimizer step) are reported separately; ratios are ratios of medians.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from papers.moduleformer.config import Config, apply_threads, model_config
from papers.moduleformer.modeling import ModuleFormerForCausalLM, MoE, ParallelExperts
from shared.accel import Timer, pick_device, seed_everything
from shared.runs import entrypoint, load_config, parse_run_args

VARIANTS = ("moduleformer", "dense_active", "dense_total")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_rounds(fns: dict[str, Callable[[], None]], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each function over ``rounds`` interleaved rounds, after one warm-up call each."""
    for fn in fns.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            with Timer() as timer:
                fn()
                _sync(device)
            seconds[name].append(timer.seconds)
    return seconds


def summary(work: float, seconds: list[float]) -> dict[str, float]:
    """Median rate (work / s) and the rates of the slowest and fastest rounds."""
    return {"median": work / statistics.median(seconds), "min": work / max(seconds), "max": work / min(seconds)}


def layer_tokens_per_s(cfg: Config, device: torch.device, tokens: int, rounds: int) -> dict[str, dict[str, float]]:
    """Inference of one MLP layer: top-k MoE with sorted dispatch, and the two dense layers of the same experts."""
    m = cfg.model
    layers = {"moduleformer": MoE(m.n_embd, m.ffd_hidden, m.n_mlp_experts, m.k_mlp, m.gating_size, 0.0),
              "dense_active": MoE(m.n_embd, m.ffd_hidden, m.k_mlp, m.k_mlp, m.gating_size, 0.0, dense=True),
              "dense_total": MoE(m.n_embd, m.ffd_hidden, m.n_mlp_experts, m.n_mlp_experts, m.gating_size, 0.0, dense=True)}
    x = torch.randn(tokens, m.n_embd, device=device)

    def run(layer: MoE) -> Callable[[], None]:
        @torch.no_grad()
        def step() -> None:
            h, routing, _ = layer.map(x)
            layer.reduce(torch.nn.functional.gelu(h), routing)
        return step

    seconds = timed_rounds({name: run(layer.to(device).eval()) for name, layer in layers.items()}, rounds, device)
    return {name: summary(tokens, s) for name, s in seconds.items()}


def model_tokens_per_s(cfg: Config, device: torch.device, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """Inference (forward) and training (forward + backward) tokens/s of the whole model per variant."""
    batch = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len), device=device)
    models = {v: ModuleFormerForCausalLM(model_config(dataclasses.replace(cfg, variant=v), cfg.vocab_size, 0)).to(device) for v in VARIANTS}

    def forward(model: ModuleFormerForCausalLM) -> Callable[[], None]:
        @torch.no_grad()
        def step() -> None:
            model(batch, use_cache=False)
        return step

    def train_step(model: ModuleFormerForCausalLM) -> Callable[[], None]:
        def step() -> None:
            model(batch, labels=batch, use_cache=False).loss.backward()
            model.zero_grad(set_to_none=True)
        return step

    fwd = timed_rounds({v: forward(m) for v, m in models.items()}, rounds, device)
    trn = timed_rounds({v: train_step(m) for v, m in models.items()}, rounds, device)
    return {v: {"inference": summary(batch.numel(), fwd[v]), "training": summary(batch.numel(), trn[v])} for v in VARIANTS}


def experts_cost_vs_e(device: torch.device, rounds: int, tokens: int = 2048, d_in: int = 256, d_out: int = 512,
                      counts: tuple[int, ...] = (8, 32, 64)) -> dict[str, dict[str, float]]:
    """Forward + backward milliseconds of one ParallelExperts at fixed tokens (evenly routed) as E grows."""
    fns = {}
    for n in counts:
        experts = ParallelExperts(n, d_in, d_out).to(device)
        x = torch.randn(tokens, d_in, device=device, requires_grad=True)

        def step(experts: ParallelExperts = experts, x: torch.Tensor = x, n: int = n) -> None:
            experts(x, [tokens // n] * n).sum().backward()
            experts.zero_grad(set_to_none=True)
        fns[f"E={n}"] = step
    seconds = timed_rounds(fns, rounds, device)
    return {name: {"median_ms": 1000 * statistics.median(s), "min_ms": 1000 * min(s), "max_ms": 1000 * max(s)} for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    seed_everything(cfg.seed)
    device = pick_device()
    rounds = 7
    layer = layer_tokens_per_s(cfg, device, cfg.batch_size * cfg.seq_len, rounds)
    model = model_tokens_per_s(cfg, device, rounds)
    experts = experts_cost_vs_e(device, rounds)
    ratio = lambda a, b, kind: model[a][kind]["median"] / model[b][kind]["median"]  # noqa: E731
    result = {
        "device": str(device), "threads": torch.get_num_threads(), "rounds": rounds,
        "moe_layer_inference_tok_s": layer,
        "model": model,
        "ratios_of_medians": {f"moduleformer/{b} {kind}": ratio("moduleformer", b, kind)
                              for b in ("dense_active", "dense_total") for kind in ("inference", "training")},
        "experts_fwd_bwd_ms_vs_E": experts,
        "experts_E64_over_E8": experts["E=64"]["median_ms"] / experts["E=8"]["median_ms"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
