"""Training and inference cost of every method side by side: ``python -m papers.adalink.bench --config FILE --out DIR``.

Per method: trainable parameters, saved-adapter bytes, training tokens/s (``bench_steps`` optimizer steps at
``batch_size``), inference tokens/s (forward passes over ``eval_batch_size`` test rows) and peak memory. On CUDA the
memory is the allocator's peak during training; on the CPU it is the bytes of the tensors training holds at its peak:
weights + gradients + AdamW's two moments + the activations autograd saves for the backward pass (counted by
``torch.autograd.graph.saved_tensors_hooks``, each storage once, the weights' own storages excluded).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from papers.adalink.config import Config
from papers.adalink.data import label_token_ids, prepare
from papers.adalink.methods import answer_logits, save_trained, trainable_parameters
from papers.adalink.train import answer_loss, draw_batch, make_model
from shared.accel import TrainContext, peak_memory_bytes, seed_everything, set_torch_threads, setup_training
from shared.runs import entrypoint, load_config, parse_run_args


def saved_activation_bytes(model: nn.Module, loss_fn, batch: dict[str, torch.Tensor]) -> int:
    """Bytes autograd keeps for backward in one forward pass (distinct storages, weights excluded)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model, batch)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def accounted_training_bytes(model: nn.Module, loss_fn, batch: dict[str, torch.Tensor]) -> dict[str, int]:
    params = [p for p in model.parameters()]
    trainable = [p for p in params if p.requires_grad]
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.numel() * p.element_size() for p in trainable)
    activations = saved_activation_bytes(model, loss_fn, batch) if trainable else 0
    parts = {"weights": weights, "gradients": grads, "optimizer": 2 * grads, "activations": activations}
    return {**parts, "total": sum(parts.values())}


def bench_method(cfg: Config, method: str, splits: dict, label_ids: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
    seed_everything(cfg.seed)
    model, _ = make_model(cfg, method)
    device = ctx.device
    model.to(device)
    amp = ctx.autocast
    loss_fn = lambda m, b: answer_loss(m, b, label_ids)  # noqa: E731
    params = trainable_parameters(model)
    row: dict[str, float] = {"trainable_params": sum(p.numel() for p in params)}
    if params:
        with tempfile.TemporaryDirectory() as tmp:
            saved = save_trained(method, model, Path(tmp) / "a", save_full_model=True)
            row["saved_bytes"] = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())
        opt = torch.optim.AdamW(params, lr=1e-8)  # the cost of a step, not learning
        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tokens, seconds = 0, 0.0
        for step in range(cfg.bench_steps + 1):  # the first step warms up and is not timed
            batch = draw_batch(splits["train"], cfg.batch_size, cfg.seed, step)
            t0 = time.perf_counter()
            ctx.train_step(model, opt, batch, loss_fn, clip_norm=cfg.clip_norm or None)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step:
                seconds += time.perf_counter() - t0
                tokens += int(batch["attention_mask"].sum())
        row["train_tokens_per_s"] = tokens / seconds
        if device.type == "cuda":
            row["peak_memory_bytes"] = peak_memory_bytes(device)
        else:
            batch = {k: v.to(device) for k, v in draw_batch(splits["train"], cfg.micro_batch_size or cfg.batch_size,
                                                             cfg.seed, 0).items()}
            acct = accounted_training_bytes(model, loss_fn, batch)
            row.update({f"memory_{k}_bytes": v for k, v in acct.items() if k != "total"})
            row["peak_memory_bytes"] = acct["total"]
    model.eval()
    test = splits["test"]
    tokens, seconds = 0, 0.0
    with torch.no_grad():
        for i in range(cfg.bench_steps):
            idx = torch.arange(i * cfg.eval_batch_size, (i + 1) * cfg.eval_batch_size) % len(test)
            batch = {k: v.to(device) for k, v in test.rows(idx).items()}
            t0 = time.perf_counter()
            with amp():
                answer_logits(model, batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    row["inference_tokens_per_s"] = tokens / seconds
    return row


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size)
    device = ctx.device
    _, tokenizer = make_model(cfg, "zero_shot")
    spec, splits = prepare(cfg.task, tokenizer, cfg.split_sizes(["train", "test"]), cfg.max_field_tokens, cfg.data_seed,
                           cfg.data_dir)
    label_ids = torch.tensor(label_token_ids(tokenizer, spec), device=device)
    result = {m: bench_method(cfg, m, splits, label_ids, ctx) for m in ("zero_shot", *cfg.methods)}
    result["_machine"] = {"device": str(device), "threads": torch.get_num_threads()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "bench.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
