"""Token streams: real corpora from ``shared.data`` (by document split) or a synthetic byte stream for smoke runs."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

HF_CORPORA = ("wikitext2", "c4")  # the paper's data, through `datasets` where the hub or its cache is reachable
CORPORA = ("shakespeare", "austen", "python_docs", "synthetic", *HF_CORPORA)
C4_SHARDS = {"train": "en/c4-train.00000-of-01024.json.gz", "validation": "en/c4-validation.00000-of-00008.json.gz"}
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


def corpus_text(name: str, split: str, max_chars: int | None, seed: int = 0) -> str:
    """The documents of one split joined by blank lines (as in the WikiText protocol), cut to ``max_chars``
    (None: all of them)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {CORPORA}")
    if name == "synthetic":
        return synthetic_text(split, min(max_chars or SYNTHETIC_MAX_CHARS, SYNTHETIC_MAX_CHARS), seed)
    if name in HF_CORPORA:
        return hf_corpus_text(name, split)[:max_chars]
    from shared.data import load

    return "\n\n".join(load(name, split=split)["text"])[:max_chars]


def hf_corpus_text(name: str, split: str) -> str:
    """WikiText-2 (raw) or the first C4 shard, as the official code reads them, documents joined by blank lines."""
    import datasets

    try:
        if name == "wikitext2":
            ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split=split)
        else:
            shard = "train" if split == "train" else "validation"
            ds = datasets.load_dataset("allenai/c4", data_files={shard: C4_SHARDS[shard]}, split=shard)
    except Exception as err:  # datasets raises several types when the hub is unreachable and nothing is cached
        raise FileNotFoundError(
            f"corpus {name!r} needs the Hugging Face hub or a local datasets cache ({type(err).__name__}: {err}); "
            "offline, use shakespeare, austen or python_docs"
        ) from err
    return "\n\n".join(ds["text"])


def tokenize(text: str, tokenizer: object | None, bos: bool = False) -> torch.Tensor:
    """Token ids (int64, 1-D); bytes when there is no tokenizer (the tiny byte-level models). ``bos`` puts the
    tokenizer's BOS token first, once, as ``tokenizer(text)`` does for LLaMA in the official ``eval_ppl``."""
    if tokenizer is None:
        return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos and bos_id is not None:
        ids = [bos_id, *ids]
    return torch.tensor(ids, dtype=torch.long)


def corpus_tokens(name: str, split: str, tokenizer: object | None, max_tokens: int, seed: int = 0,
                  bos: bool = False) -> torch.Tensor:
    """At most ``max_tokens`` tokens of a corpus split (about 6 characters per token are read); 0: the whole split."""
    ids = tokenize(corpus_text(name, split, max_chars=max_tokens * 6 or None, seed=seed), tokenizer, bos)
    return ids[:max_tokens] if max_tokens else ids
