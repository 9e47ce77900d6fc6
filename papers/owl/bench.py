"""Wall time and peak memory of each pruner, and perplexity-evaluation tokens/s.

``python -m papers.owl.bench --config FILE --out DIR [key=value ...]`` (uses the config's model, calibration set
and sparsity; every pruner at uniform ratios) on the config's device. Memory per pruner: the absolute peak resident
set size of the process while it ran (sampled every 20 ms) and that peak minus the level before it; on CUDA also
the absolute peak allocated GPU memory while it ran.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import torch

from papers.owl.config import Config
from papers.owl.models import DTYPES, load_model
from papers.owl.offload import execution_device, streamed
from papers.owl.pipeline import calibration_sequences, evaluation_tokens, prune
from papers.owl.sequential import PRUNERS, find_decoder_blocks
from shared.accel import ThroughputMeter, Timer, peak_memory_bytes, seed_everything, set_torch_threads
from shared.runs import entrypoint, load_config, parse_run_args


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class PeakRSS:
    """Samples the resident set size in a thread: ``peak`` (absolute) and ``extra`` (the peak above entry)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.extra, self.peak = interval, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._base = self._peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self._peak, _rss_bytes())
        self.extra = self.peak - self._base


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_run_args(argv, __doc__)
    cfg = load_config(Config, args.config, args.overrides)
    set_torch_threads(cfg.threads)
    seed_everything(cfg.seed)
    model, tokenizer = load_model(cfg.model, cfg.seed, cfg.device, cfg.dtype, cfg.offload)
    device = execution_device(model)
    dense = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    sequences = calibration_sequences(cfg, tokenizer)
    result: dict[str, Any] = {"device": str(device), "model": cfg.model, "sparsity": cfg.sparsity,
                              "dtype": cfg.dtype, "calibration": f"{cfg.n_calib} x {cfg.calib_len}",
                              "threads": torch.get_num_threads()}
    for pruner in PRUNERS:
        model.load_state_dict(dense)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        with PeakRSS() as mem, Timer() as timer:
            prune(model, cfg, pruner, cfg.sparsity, sequences)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        result[pruner] = {"seconds": timer.seconds, "peak_rss_bytes": mem.peak, "peak_rss_extra_bytes": mem.extra,
                          "peak_gpu_memory_bytes": peak_memory_bytes(device) if device.type == "cuda" else 0}
    model.load_state_dict(dense)
    tokens = next(iter(evaluation_tokens(cfg, tokenizer).values()))
    windows = tokens[: tokens.numel() // cfg.eval_window * cfg.eval_window].view(-1, cfg.eval_window)
    meter = ThroughputMeter(warmup=1)
    with torch.no_grad(), streamed(find_decoder_blocks(model), device):
        for window in (windows[0], *windows):  # the first pass is a warm-up
            model(window.reshape(1, -1).to(device)).logits.float()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            meter.update(window.numel())
    result["eval_tokens_per_s"] = meter.rate
    result["calibration_activation_bytes"] = cfg.n_calib * cfg.calib_len * model.config.hidden_size * DTYPES[
        cfg.dtype].itemsize
    result["model_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    raise SystemExit(entrypoint(main))
