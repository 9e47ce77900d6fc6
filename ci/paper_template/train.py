"""Train the model: ``python -m papers.__NAME__.train --config FILE --out DIR [key=value ...]``."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from papers.__NAME__.config import Config
from papers.__NAME__.model import make_model
from shared.accel import seed_everything
from shared.data import load
from shared.runs import Run, load_checkpoint, load_config, parse_run_args, save_checkpoint


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    seed_everything(cfg.seed)
    run = Run(args.out, cfg)
    data = load("toy2d", name="ring8", n=cfg.steps * cfg.batch_size, seed=cfg.seed)
    points, labels = torch.from_numpy(data["points"]), torch.from_numpy(data["components"])
    model = make_model(cfg.hidden, int(labels.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt, start = run.dir / "checkpoint.pt", 0
    if ckpt.exists():  # resume from the last complete checkpoint
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
    loss = torch.tensor(float("nan"))
    for step in tqdm(range(start, cfg.steps), desc="train", initial=start, total=cfg.steps):
        batch = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        loss = torch.nn.functional.cross_entropy(model(points[batch]), labels[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(step, loss=loss.item())
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1})
    return run.finish({"final_loss": loss.item(), "steps": cfg.steps})


if __name__ == "__main__":
    main()
