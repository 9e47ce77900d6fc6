"""Tokens/s of one MoE feed-forward layer and of the whole model, ModuleFormer against both dense baselines.

    python -m papers.moduleformer.bench --config papers/moduleformer/configs/small.yaml --out runs/bench

Random weights and tokens (speed does not depend on training); forward passes without gradients, plus one
training step (forward and backward) per repeat for the whole models. Ratios are taken within one run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from papers.moduleformer.config import Config, apply_threads, model_config
from papers.moduleformer.modeling import ModuleFormerForCausalLM, MoE
from shared.accel import Timer, pick_device, seed_everything
from shared.runs import load_config, parse_run_args

VARIANTS = ("moduleformer", "dense_active", "dense_total")


def _best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up call (least disturbed by a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        with Timer() as timer:
            fn()
        times.append(timer.seconds)
    return min(times)


def layer_tokens_per_s(cfg: Config, device: torch.device, tokens: int, repeats: int) -> dict[str, float]:
    """The MLP of one block: top-k MoE with sorted dispatch, and the two dense layers built from the same experts."""
    m = cfg.model
    layers = {
        "moduleformer": MoE(m.n_embd, m.ffd_hidden, m.n_mlp_experts, m.k_mlp, m.gating_size, 0.0),
        "dense_active": MoE(m.n_embd, m.ffd_hidden, m.k_mlp, m.k_mlp, m.gating_size, 0.0, dense=True),
        "dense_total": MoE(m.n_embd, m.ffd_hidden, m.n_mlp_experts, m.n_mlp_experts, m.gating_size, 0.0, dense=True),
    }
    x = torch.randn(tokens, m.n_embd, device=device)
    result = {}
    for name, layer in layers.items():
        layer = layer.to(device).eval()

        @torch.no_grad()
        def step(layer: MoE = layer) -> None:
            h, routing, _ = layer.map(x)
            layer.reduce(torch.nn.functional.gelu(h), routing)
            if device.type == "cuda":
                torch.cuda.synchronize()

        result[name] = tokens / _best_seconds(step, repeats)
    return result


def model_tokens_per_s(cfg: Config, device: torch.device, repeats: int) -> dict[str, dict[str, float]]:
    """Forward (inference) and forward+backward (training) tokens/s of the whole model per variant."""
    batch = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len), device=device)
    result = {}
    for variant in VARIANTS:
        model = ModuleFormerForCausalLM(model_config(dataclasses.replace(cfg, variant=variant), cfg.vocab_size, 0)).to(device)

        def forward(model: ModuleFormerForCausalLM = model) -> None:
            with torch.no_grad():
                model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()

        def train_step(model: ModuleFormerForCausalLM = model) -> None:
            model(batch, labels=batch).loss.backward()
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()

        result[variant] = {"forward_tok_s": batch.numel() / _best_seconds(forward, repeats),
                           "train_tok_s": batch.numel() / _best_seconds(train_step, repeats)}
    return result


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    apply_threads(cfg)
    seed_everything(cfg.seed)
    device = pick_device()
    repeats = 3
    layer = layer_tokens_per_s(cfg, device, cfg.batch_size * cfg.seq_len, repeats)
    model = model_tokens_per_s(cfg, device, repeats)
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "moe_layer_tok_s": layer,
        "moe_layer_speedup_vs_dense_total": layer["moduleformer"] / layer["dense_total"],
        "moe_layer_speedup_vs_dense_active": layer["moduleformer"] / layer["dense_active"],
        "model": model,
        "model_train_speedup_vs_dense_total": model["moduleformer"]["train_tok_s"] / model["dense_total"]["train_tok_s"],
        "model_forward_speedup_vs_dense_total": model["moduleformer"]["forward_tok_s"] / model["dense_total"]["forward_tok_s"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
