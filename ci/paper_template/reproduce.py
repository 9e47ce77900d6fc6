"""Train, evaluate and write results.md: ``python -m papers.__NAME__.reproduce --config FILE --out DIR``."""

from __future__ import annotations

import json
from pathlib import Path

from papers.__NAME__ import evaluate, train
from shared.runs import entrypoint, parse_run_args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_run_args(argv, __doc__)
    common = ["--config", args.config, "--out", args.out, *args.overrides]
    train.main([*common, *(["--overwrite"] if args.overwrite else [])])
    metrics = evaluate.main(common)
    table = "| metric | ours | paper |\n|---|---|---|\n" + "".join(f"| {k} | {v:.4f} | n/a |\n" for k, v in metrics.items())
    Path(args.out, "results.md").write_text(table)
    Path(args.out, "results.json").write_text(json.dumps(metrics, indent=2))
    print(table)
    return metrics


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
