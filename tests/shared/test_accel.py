from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shared.accel import (
    ThroughputMeter,
    Timer,
    cleanup_distributed,
    count_flops,
    count_parameters,
    init_distributed,
    jax_key,
    peak_memory_bytes,
    pick_device,
    seed_everything,
)


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


def test_seeding_is_reproducible() -> None:
    seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_jax_key() -> None:
    import jax

    assert np.array_equal(jax.random.normal(jax_key(3), (4,)), jax.random.normal(jax_key(3), (4,)))


def test_counts() -> None:
    layer = torch.nn.Linear(8, 4)
    assert count_parameters(layer) == 8 * 4 + 4
    assert count_flops(layer, torch.randn(5, 8)) == 2 * 5 * 8 * 4
    assert peak_memory_bytes() > 0


def test_attention_block_flops_are_exact() -> None:
    """Self-attention of width d, h heads, s tokens, batch b: 4 projections 2*b*s*d*d each (+ none for biases in
    the count), and QK^T plus AV at 2*b*h*s*s*(d/h) each."""
    b, s, d, h = 2, 16, 32, 4
    attn = torch.nn.MultiheadAttention(d, h, batch_first=True)
    x = torch.randn(b, s, d)
    expected = 4 * 2 * b * s * d * d + 2 * (2 * b * h * s * s * (d // h))
    assert count_flops(lambda t: attn(t, t, t, need_weights=False), x) == expected
    q = torch.randn(b, h, s, d // h)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    assert count_flops(sdpa, q, q, q) == 2 * (2 * b * h * s * s * (d // h))


def test_timer_and_throughput() -> None:
    with Timer() as t:
        sum(range(10000))
    assert t.seconds > 0
    meter = ThroughputMeter(warmup=1)
    for _ in range(3):
        meter.update(10)
    assert meter.items == 20 and meter.rate > 0


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = init_distributed()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))
    x = torch.full((2, 3), float(rank + 1))  # each rank sees different data
    model(x).sum().backward()
    queue.put((info.rank, info.backend, model.module.weight.grad.tolist()))
    cleanup_distributed()


def test_two_process_gloo_all_reduces_gradients() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [r[1] for r in results] == ["gloo", "gloo"]
    # d/dW of sum(W x + b) over 2 rows is 2 * x_row: rank 0 gives 2, rank 1 gives 4; DDP averages to 3.
    for _, _, grad in results:
        assert grad == [[3.0, 3.0, 3.0]]


def test_set_torch_threads() -> None:
    from shared.accel import set_torch_threads

    before = torch.get_num_threads()
    try:
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
        set_torch_threads(0)  # 0 keeps the current setting
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match=">= 0"):
            set_torch_threads(-1)
    finally:
        torch.set_num_threads(before)
