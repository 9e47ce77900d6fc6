"""Text for training: a byte-level BPE tokenizer trained on the training documents, and token streams per split."""

from __future__ import annotations

import hashlib

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from shared.data import data_home, load

EOS = "<|endoftext|>"


def corpus_text(corpora: list[str], split: str) -> str:
    """The documents of ``split`` of each corpus, joined by the end-of-text marker."""
    return f"\n{EOS}\n".join(text for name in corpora for text in load(name, split=split)["text"])


def get_tokenizer(corpora: list[str], vocab_size: int, max_chars: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained once on the training split, ``max_chars // len(corpora)`` characters from each corpus
    (so every corpus shapes the vocabulary), cached under data_home()."""
    key = hashlib.sha256(f"balanced-{sorted(corpora)}-{vocab_size}-{max_chars}".encode()).hexdigest()[:12]
    path = data_home() / "moduleformer" / f"bpe-{vocab_size}-{key}.json"
    if not path.exists():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        share = max_chars // len(corpora)
        tok.train_from_iterator([corpus_text([name], "train")[:share] for name in corpora], trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(path))
    return PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=EOS, pad_token=EOS, bos_token=EOS)


def token_stream(tokenizer: PreTrainedTokenizerFast, corpora: list[str], split: str, max_tokens: int | None = None,
                 max_chars: int = 0) -> torch.Tensor:
    """The documents of ``split`` (their first ``max_chars`` characters if > 0) as one 1-D LongTensor of token ids,
    optionally cut to its first ``max_tokens``.

    Tokenised once per (tokenizer, corpora, split) and cached under data_home() next to the tokenizer.
    """
    vocab = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:12]
    path = data_home() / "moduleformer" / "streams" / f"{vocab}-{'+'.join(corpora)}-{split}-{max_chars}.pt"
    if path.exists():
        ids = torch.load(path)
    else:
        text = corpus_text(corpora, split)
        ids = torch.tensor(tokenizer(text[:max_chars] if max_chars else text)["input_ids"], dtype=torch.long)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ids, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    return ids if max_tokens is None else ids[:max_tokens]


def random_windows(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows of ``seq_len`` tokens at random offsets."""
    if len(stream) <= seq_len:
        raise ValueError(f"token stream of {len(stream)} tokens is shorter than one window of {seq_len}")
    starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=generator)
    return torch.stack([stream[s : s + seq_len] for s in starts.tolist()])


def spread_windows(stream: torch.Tensor, n_tokens: int, seq_len: int) -> torch.Tensor:
    """``n_tokens // seq_len`` windows (at least one) at evenly spaced offsets over the whole stream, so they cover
    all of its documents; disjoint whenever the stream holds that many windows (else as many as fit)."""
    if len(stream) < seq_len:
        raise ValueError(f"token stream of {len(stream)} tokens is shorter than one window of {seq_len}")
    n = max(1, min(n_tokens // seq_len, len(stream) // seq_len))
    starts = torch.linspace(0, len(stream) - seq_len, n).long() if n > 1 else torch.zeros(1, dtype=torch.long)
    return torch.stack([stream[s : s + seq_len] for s in starts.tolist()])


def held_out_windows(tokenizer: PreTrainedTokenizerFast, corpora: list[str], split: str, n_tokens: int, seq_len: int,
                     max_chars: int = 0) -> dict[str, torch.Tensor]:
    """Per corpus, ``n_tokens`` of evaluation windows spread over all documents of its ``split``."""
    return {name: spread_windows(token_stream(tokenizer, [name], split, None, max_chars), n_tokens, seq_len) for name in corpora}
