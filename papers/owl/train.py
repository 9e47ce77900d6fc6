"""Prune one model with one method: ``python -m papers.owl.train --config FILE --out DIR [key=value ...]``.

Writes the pruned model (``pruned_model/``: safetensors via save_pretrained, or with ``save_format=compressed``
the kept weights and a bit-packed mask), ``layer_report.json`` (per-block outlier ratio, assigned N or sparsity,
achieved sparsity) and ``layer_report.png``. An interrupted run resumes from the last completed block.
``metrics.json`` holds both sparsities, the pruning time (the OWL outlier pass included), absolute peak RSS and
GPU memory, and calibration tokens per second.
"""

from __future__ import annotations

import shutil
import time

import torch

from papers.owl.config import Config
from papers.owl.export import save_pruned
from papers.owl.models import load_model
from papers.owl.offload import execution_device
from papers.owl.pipeline import (
    calibration_sequences,
    memory_report,
    plot_layer_report,
    prune,
    split_method,
    write_json,
)
from papers.owl.sequential import dense_input_norms, find_decoder_blocks, outlier_ratios
from shared.accel import seed_everything, set_torch_threads
from shared.runs import Run, entrypoint, load_checkpoint, load_config, parse_run_args, save_checkpoint


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg, overwrite=args.overwrite)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype, cfg.offload)
    device = execution_device(model)
    sequences = calibration_sequences(cfg, tokenizer)
    blocks = find_decoder_blocks(model)
    start = time.perf_counter()
    ckpt_dir = run.dir / "checkpoints"
    progress_path = ckpt_dir / "progress.pt"
    start_block, start_inputs, ratios = 0, None, None
    if progress_path.exists():  # resume: restore the blocks pruned before the interruption
        state = load_checkpoint(progress_path)
        start_block, ratios = state["next_block"], state["outlier_ratios"]
        start_inputs = state["inputs"].to(device) if state["inputs"].numel() else None
        for i in range(start_block):
            blocks[i].load_state_dict(load_checkpoint(ckpt_dir / f"block_{i:03d}.pt")["state"])
    elif split_method(cfg.method)[1]:  # OWL pass 1 on the dense model, before any block is pruned
        ratios = outlier_ratios(model, dense_input_norms(model, sequences, cfg.progress), cfg.owl_m,
                                per_layer=cfg.owl_granularity == "layer")

    def checkpoint(i: int, inputs: torch.Tensor) -> None:
        save_checkpoint(ckpt_dir / f"block_{i:03d}.pt", {"state": blocks[i].state_dict()})
        save_checkpoint(progress_path, {"next_block": i + 1, "inputs": inputs, "outlier_ratios": ratios})
        run.log(i, block_sparsity=float(sum((p == 0).sum() for p in blocks[i].parameters() if p.dim() == 2)
                                        / sum(p.numel() for p in blocks[i].parameters() if p.dim() == 2)))

    report = prune(model, cfg, cfg.method, cfg.sparsity, sequences, start_block=start_block,
                   start_inputs=start_inputs, on_block_done=checkpoint, ratios=ratios)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start  # the dense outlier pass of OWL included
    write_json(run.dir / "layer_report.json", report)
    if report.get("assigned_sparsity"):
        plot_layer_report(report, run.dir / "layer_report.png")
    saved = save_pruned(model, tokenizer, run.dir / "pruned_model", cfg.save_format) if cfg.save_model else {}
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the finished model supersedes the per-block checkpoints
    done = len(blocks) - start_block
    return run.finish({"overall_sparsity": report["overall_sparsity"], "model_sparsity": report["model_sparsity"],
                       "prune_seconds": seconds, "resumed_from_block": start_block,
                       "steps_per_s": done / seconds, "tokens_per_s": sequences.numel() * done / len(blocks) / seconds,
                       **memory_report(device), **saved})


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
