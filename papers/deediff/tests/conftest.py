"""This paper's tests run torch on one thread: the models are tiny, and on a busy shared CPU two threads that
wait on each other are many times slower than one. The previous setting is restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
