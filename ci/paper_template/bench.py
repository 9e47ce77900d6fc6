"""Training steps per second: ``python -m papers.__NAME__.bench --config FILE --out DIR``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from papers.__NAME__.config import Config
from papers.__NAME__.model import make_model
from shared.accel import Timer
from shared.runs import entrypoint, load_config, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    model = make_model(cfg.hidden, 8)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x, y = torch.randn(cfg.batch_size, 2), torch.randint(0, 8, (cfg.batch_size,))
    with Timer() as timer:
        for _ in range(100):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    result = {"train_steps_per_s": 100 / timer.seconds}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "bench.json").write_text(json.dumps(result, indent=2))
    print(result)
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
