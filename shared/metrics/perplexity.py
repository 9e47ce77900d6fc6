"""Perplexity of a causal LM over non-overlapping windows (the protocol of SparseGPT, Wanda and OWL)."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm


@torch.no_grad()
def causal_lm_perplexity(
    model: torch.nn.Module,
    token_ids: torch.Tensor,
    window: int,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> float:
    """exp(mean next-token NLL) over floor(N / window) disjoint windows; the tail shorter than a window is dropped.

    ``model(input_ids).logits`` must be (batch, window, vocab), as for any Hugging Face causal LM.
    """
    token_ids = token_ids.reshape(-1)
    n_windows = token_ids.numel() // window
    if n_windows == 0:
        raise ValueError(f"{token_ids.numel()} tokens do not fill one window of {window}")
    windows = token_ids[: n_windows * window].view(n_windows, window)
    total_nll, total_tokens = 0.0, 0
    for start in tqdm(range(0, n_windows, batch_size), desc="perplexity", disable=not progress, leave=False):
        batch = windows[start : start + batch_size].to(device)
        logits = model(batch).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total_nll += nll.item()
        total_tokens += batch[:, 1:].numel()
    return math.exp(total_nll / total_tokens)
