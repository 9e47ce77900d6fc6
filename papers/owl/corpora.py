"""Token streams: real corpora from ``shared.data`` (by document split) or a synthetic byte stream for smoke runs."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

CORPORA = ("shakespeare", "austen", "python_docs", "synthetic")
SYNTHETIC_MAX_CHARS = 32_768


def synthetic_text(name: str, n_chars: int, seed: int) -> str:
    """A deterministic order-1 Markov stream over 32 letters: structure a tiny model can feel, no data needed."""
    digest = int(hashlib.sha256(f"{name}:{seed}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(digest)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz .,;\n!"))
    transition = rng.dirichlet(np.full(len(alphabet), 0.2), size=len(alphabet))
    cumulative = transition.cumsum(axis=1)
    uniforms = rng.random(n_chars)
    state, out = 0, np.empty(n_chars, dtype=np.int64)
    for i in range(n_chars):
        state = min(int(np.searchsorted(cumulative[state], uniforms[i])), len(alphabet) - 1)
        out[i] = state
    return "".join(alphabet[out])


def corpus_text(name: str, split: str, max_chars: int, seed: int = 0) -> str:
    """The documents of one split joined by blank lines (as in the WikiText protocol), cut to ``max_chars``."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {CORPORA}")
    if name == "synthetic":
        return synthetic_text(split, min(max_chars, SYNTHETIC_MAX_CHARS), seed)
    from shared.data import load

    return "\n\n".join(load(name, split=split)["text"])[:max_chars]


def tokenize(text: str, tokenizer: object | None) -> torch.Tensor:
    """Token ids (int64, 1-D); bytes when there is no tokenizer (the tiny byte-level models)."""
    if tokenizer is None:
        return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def corpus_tokens(name: str, split: str, tokenizer: object | None, max_tokens: int, seed: int = 0) -> torch.Tensor:
    """At most ``max_tokens`` tokens of a corpus split (about 6 characters per token are read)."""
    ids = tokenize(corpus_text(name, split, max_chars=max_tokens * 6, seed=seed), tokenizer)
    return ids[:max_tokens]
