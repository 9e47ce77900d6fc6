"""Prune one model with one method: ``python -m papers.owl.train --config FILE --out DIR [key=value ...]``.

Writes the pruned model (``pruned_model/``, safetensors via save_pretrained), ``layer_report.json`` (per-block
outlier ratio, assigned and achieved sparsity) and ``layer_report.png``. An interrupted run resumes from the last
completed block.
"""

from __future__ import annotations

import shutil
import time

import torch

from papers.owl.config import Config
from papers.owl.models import load_model, model_device
from papers.owl.pipeline import calibration_sequences, plot_layer_report, prune, split_method, write_json
from papers.owl.sequential import dense_input_norms, find_decoder_blocks, outlier_ratios
from shared.accel import seed_everything, set_torch_threads
from shared.runs import Run, load_checkpoint, load_config, parse_run_args, save_checkpoint


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype)
    sequences = calibration_sequences(cfg, tokenizer)
    blocks = find_decoder_blocks(model)
    ckpt_dir = run.dir / "checkpoints"
    progress_path = ckpt_dir / "progress.pt"
    start_block, start_inputs, ratios = 0, None, None
    if progress_path.exists():  # resume: restore the blocks pruned before the interruption
        state = load_checkpoint(progress_path)
        start_block, ratios = state["next_block"], state["outlier_ratios"]
        start_inputs = state["inputs"].to(model_device(model)) if state["inputs"].numel() else None
        for i in range(start_block):
            blocks[i].load_state_dict(load_checkpoint(ckpt_dir / f"block_{i:03d}.pt")["state"])
    elif split_method(cfg.method)[1]:  # OWL pass 1 on the dense model, before any block is pruned
        ratios = outlier_ratios(model, dense_input_norms(model, sequences, cfg.progress), cfg.owl_m)

    def checkpoint(i: int, inputs: torch.Tensor) -> None:
        save_checkpoint(ckpt_dir / f"block_{i:03d}.pt", {"state": blocks[i].state_dict()})
        save_checkpoint(progress_path, {"next_block": i + 1, "inputs": inputs, "outlier_ratios": ratios})
        run.log(i, block_sparsity=float(sum((p == 0).sum() for p in blocks[i].parameters() if p.dim() == 2)
                                        / sum(p.numel() for p in blocks[i].parameters() if p.dim() == 2)))

    start = time.perf_counter()
    report = prune(model, cfg, cfg.method, cfg.sparsity, sequences, start_block=start_block,
                   start_inputs=start_inputs, on_block_done=checkpoint, ratios=ratios)
    seconds = time.perf_counter() - start
    write_json(run.dir / "layer_report.json", report)
    if report.get("assigned_sparsity"):
        plot_layer_report(report, run.dir / "layer_report.png")
    if cfg.save_model:
        model.save_pretrained(run.dir / "pruned_model")
        if tokenizer is not None:
            tokenizer.save_pretrained(run.dir / "pruned_model")
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the finished model supersedes the per-block checkpoints
    return run.finish({"overall_sparsity": report["overall_sparsity"], "prune_seconds": seconds,
                       "resumed_from_block": start_block})


if __name__ == "__main__":
    main()
