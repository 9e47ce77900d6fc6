"""Train the model: ``python -m papers.__NAME__.train --config FILE --out DIR [key=value ...]``.

Runs on CPU or CUDA (``device``, ``precision``), accumulates gradients (``micro_batch_size``) and runs under
``torchrun --nproc_per_node N`` with the same global batch and data order as one process. Resumes from the run
folder's newest checkpoint.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from papers.__NAME__.config import Config
from papers.__NAME__.model import make_model
from shared.accel import seed_everything, setup_training
from shared.data import load
from shared.runs import Run, entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__, multi_process=True)
    cfg = load_config(Config, args.config, args.overrides)
    ctx = setup_training(cfg.device, cfg.precision, global_batch=cfg.batch_size, micro_batch=cfg.micro_batch_size)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg, overwrite=args.overwrite)
    data = load("toy2d", name="ring8", n=cfg.steps * cfg.batch_size, seed=cfg.seed)
    points, labels = torch.from_numpy(data["points"]), torch.from_numpy(data["components"])
    model = ctx.prepare(make_model(cfg.hidden, int(labels.max()) + 1))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, first_loss = 0, float("nan")
    if (state := run.restore()) is not None:
        ctx.unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, first_loss = state["step"], state["first_loss"]

    def loss_fn(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(net(x), y)  # the placeholder's loss: cross-entropy

    stats, tick = {"loss": float("nan")}, time.perf_counter()
    for step in tqdm(range(start, cfg.steps), desc="train", initial=start, total=cfg.steps, disable=not ctx.is_main):
        rows = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)  # the global batch, the same on every rank
        stats = ctx.train_step(model, opt, (points[rows], labels[rows]), loss_fn)
        first_loss = stats["loss"] if step == 0 else first_loss
        run.log(step, loss=stats["loss"])
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            run.save_checkpoint({"model": ctx.unwrap(model).state_dict(), "optimizer": opt.state_dict(),
                                 "first_loss": first_loss}, step + 1)
    seconds = time.perf_counter() - tick
    done = cfg.steps - start
    metrics = {"final_loss": stats["loss"], "first_loss": first_loss, "steps": cfg.steps,
               "steps_per_s": done / seconds if done else float("nan"),
               "samples_per_s": done * cfg.batch_size / seconds if done else float("nan"),
               "peak_gpu_memory_bytes": ctx.peak_gpu_memory_bytes()}
    result = run.finish(metrics)
    ctx.close()
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
